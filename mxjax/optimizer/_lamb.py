r"""LAMB (MXNet ``LAMB``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._adam import check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import pow_f32
from ._trust import check_bounds, clamp_norm, l2_norm, safe_div


def lamb(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    bias_correction: bool = True,
    **common: Any,
) -> Optimizer:
    r"""LAMB (You et al., 2019), as MXNet 1.9.1's ``multi_lamb_update`` kernel.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\hat g^2 \\
        u &= \frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)} + \epsilon} + \lambda w
             \quad\text{(bias\_correction; else }
             u = m/(\sqrt v + \epsilon) + \lambda w)\\
        r_1 &= \min(\max(\lVert w\rVert, \mathrm{lb}), \mathrm{ub}), \qquad
        r_2 = \lVert u\rVert \\
        w &\leftarrow w - \eta\, \frac{r_1}{r_2}\, u
        \qquad(\text{the ratio is 1 if } r_1 = 0 \text{ or } r_2 = 0)

    Norms are per leaf (L2 over the whole tensor, in float32); wd enters the Adam
    direction, not the moments [Q16]. ``β^t`` is computed in float32 as the kernel does.

    **Quirks:** [Q20] a bound of 0 (or ``None``) is ignored, as MXNet passes the bounds
    only when truthy. [Q1] the default lr 0.001 overrides a scheduler's ``base_lr``.
    Under ``multi_precision`` MXNet's multi-tensor kernel takes ``||w||`` from the
    float16 weight; mxjax takes it from the float32 master copy (a difference below
    float16 round-off).

    Args:
      learning_rate: η (0.001).
      beta1, beta2: moment decay rates in [0, 1).
      epsilon: ε > 0 (1e-6), added to the square root.
      lower_bound, upper_bound: ``None`` or a real ≥ 0 bounding ``||w||`` (0: none);
        ``lower_bound <= upper_bound`` when both are set.
      bias_correction: divide the moments by ``1 - β^t``.
      **common: the base arguments.

    Raises:
      ValueError: a hyperparameter out of range (named in the message).
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    check_bounds(lower_bound, upper_bound)
    flag("bias_correction", bias_correction)

    def kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        mean, var = s
        dt = w.dtype
        b1, b2 = jnp.asarray(beta1, jnp.float32), jnp.asarray(beta2, jnp.float32)
        mean = b1.astype(dt) * mean + (1 - b1).astype(dt) * g
        var = b2.astype(dt) * var + (1 - b2).astype(dt) * g * g
        eps = jnp.asarray(epsilon, dt)
        if bias_correction:
            m_hat = mean / (1 - pow_f32(beta1, h.t).astype(dt))
            v_hat = var / (1 - pow_f32(beta2, h.t).astype(dt))
            u = m_hat / (jnp.sqrt(v_hat) + eps) + h.wd * w
        else:
            u = mean / (jnp.sqrt(var) + eps) + h.wd * w
        r1 = clamp_norm(l2_norm(w), lower_bound, upper_bound)
        r2 = l2_norm(u)
        ratio = safe_div(r1, r2, (r1 != 0) & (r2 != 0)).astype(dt)
        # XLA's CPU -O0 code contracted this into an FMA on some threads only
        return w - (h.lr * ratio) * u, (mean, var)

    # Not elementwise: the trust ratio needs the whole leaf's norms (per-leaf scalars).
    return from_rule(
        Rule(kernel, slots=("mean", "var"), wd_mode="kernel", elementwise=False,
             per_leaf_scalars=True),
        name="lamb",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            lower_bound=lower_bound,
            upper_bound=upper_bound,
            bias_correction=bias_correction,
        ),
        **common,
    )
