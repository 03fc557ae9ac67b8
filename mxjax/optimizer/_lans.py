r"""LANS (MXNet 2.0 ``LANS``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._adam import check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import pow_f32
from ._trust import check_bounds, clamp_norm, l2_norm, safe_div


def lans(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    **common: Any,
) -> Optimizer:
    r"""LANS (Zheng et al., 2020), as MXNet 2.0's fused ``multi_lans_update``.

    .. math::

        \hat g &= \mathrm{clip}_c\!\left(\frac{\mathrm{rs}\cdot g}
                  {\lVert \mathrm{rs}\cdot g\rVert}\right) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\hat g^2, \qquad
        d = \sqrt{v/(1-\beta_2^t)} + \epsilon \\
        u_m &= \frac{m/(1-\beta_1^t)}{d} + \lambda w, \qquad
        u_g = \frac{\hat g}{d} + \lambda w \\
        r_1 &= \min(\max(\lVert w\rVert, \mathrm{lb}), \mathrm{ub}), \qquad
        r_m = r_1/\lVert u_m\rVert, \quad r_g = r_1/\lVert u_g\rVert \\
        w &\leftarrow w - \eta\,(\beta_1 r_m u_m + (1-\beta_1) r_g u_g)

    A ratio is 1 when its numerator or denominator is 0. Norms are per leaf (L2 over
    the whole tensor, in float32). The fused path (MXNet's default) uses the old ``w``
    in both halves; MXNet's ``step()`` path would apply them one after the other.
    Moments are float32 for every weight dtype (as in MXNet). A gradient that is
    all zero gives ``0/0`` = NaN, as in MXNet.

    **Quirks:** [Q20] a bound of 0 (or ``None``) is ignored. Under ``multi_precision``
    MXNet takes ``||w||`` from the float16 weight, mxjax from the master copy (a
    difference below float16 round-off).

    Args:
      learning_rate: η (0.001).
      beta1, beta2: decay rates in [0, 1).
      epsilon: ε > 0 (1e-6).
      lower_bound, upper_bound: ``None`` or a real ≥ 0 bounding ``||w||`` (0: none);
        ``lower_bound <= upper_bound`` when both are set.
      **common: the base arguments.

    Raises:
      ValueError: a hyperparameter out of range (named in the message).
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    check_bounds(lower_bound, upper_bound)

    def kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        mean, var = s
        g = g * jnp.float32(h.rescale_grad) if h.rescale_grad != 1.0 else g
        g = g / l2_norm(g)
        if h.clip is not None:
            g = jnp.clip(g, -h.clip, h.clip)
        b1, b2 = jnp.float32(beta1), jnp.float32(beta2)
        mean = b1 * mean + (1 - b1) * g
        var = b2 * var + (1 - b2) * g * g
        m_hat = mean / (1 - pow_f32(beta1, h.t))
        d = jnp.sqrt(var / (1 - pow_f32(beta2, h.t))) + jnp.float32(epsilon)
        u_m = m_hat / d + h.wd * w
        u_g = g / d + h.wd * w
        r1 = clamp_norm(l2_norm(w), lower_bound, upper_bound)
        rm, rg = l2_norm(u_m), l2_norm(u_g)
        r_m = safe_div(r1, rm, (r1 != 0) & (rm != 0)) * b1
        r_g = safe_div(r1, rg, (r1 != 0) & (rg != 0)) * (1 - b1)
        # no FMA contraction, which XLA's CPU -O0 code applied on some threads
        step = (h.lr * r_m) * u_m + (h.lr * r_g) * u_g
        return w - step, (mean, var)

    # Not elementwise: the gradient normalisation and the trust ratios need whole-leaf
    # norms. Moments are float32 (state_dtype), so the kernel computes in float32.
    return from_rule(
        Rule(
            kernel,
            slots=("mean", "var"),
            wd_mode="raw",
            state_dtype="float32",
            elementwise=False,
            per_leaf_scalars=True,
        ),
        name="lans",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            lower_bound=lower_bound,
            upper_bound=upper_bound,
        ),
        **common,
    )
