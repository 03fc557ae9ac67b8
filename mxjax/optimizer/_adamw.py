r"""AdamW (MXNet 2.0 ``AdamW``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._adam import bias_corrected_lr, check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def adamw(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    correct_bias: bool = True,
    **common: Any,
) -> Optimizer:
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as MXNet 2.0.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\hat g^2 \\
        \eta_t &= \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
                  \ \text{(correct\_bias, else } \eta) \\
        w &\leftarrow w - \eta_t\left(\frac{m}{\sqrt v + \epsilon} + \lambda w\right)

    MXNet 2.0.0b1's fused (default) path: ``multi_adamw_update`` with ``etas = η_t``.

    **Quirks:** [Q26] the decoupled weight decay is scaled by the *bias-corrected*
    lr ``η_t``, not by ``η``; MXNet's fused op skips the whole update (weights and
    moments; the count still advances) when ``rescale_grad`` is 0 or non-finite. In
    mxjax ``rescale_grad`` is a finite constant, so ``rescale_grad=0`` makes every
    update a no-op apart from the count. ε is added to ``√v``, not to ``√v̂`` [Q14].
    Like every MXNet 2.0 optimizer, the default lr overrides a scheduler's ``base_lr``;
    MXNet 2.0 has no name-based default wd rule (leave ``wd_by_name`` off to match it).

    Args:
      learning_rate: η (0.001).
      beta1, beta2: moment decay rates in [0, 1).
      epsilon: ε > 0 (1e-6).
      correct_bias: fold the bias correction into the lr.
      **common: the base arguments.

    Raises:
      ValueError: a hyperparameter out of range (named in the message).
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    flag("correct_bias", correct_bias)

    def kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        if h.rescale_grad == 0.0:  # [Q26]
            return w, s
        mean, var = s
        dt = w.dtype
        b1, b2 = jnp.asarray(beta1, dt), jnp.asarray(beta2, dt)
        # MXNet's multi_adamw_update form, rounding included: β(s - x) + x. Its var
        # update cancels (g² - 0.999·g²), so MXNet's own rounding error is amplified
        # ~1000×; the base keeps every product out of an FMA under jit
        # (mxjax.optimizer._rounding), which would miss MXNet by ~1e-5 relative.
        mean = b1 * (mean - g) + g
        g2 = g * g
        var = b2 * (var - g2) + g2
        eta_t = bias_corrected_lr(h.lr, beta1, beta2, h.t, correct_bias)
        d = mean / (jnp.sqrt(var) + jnp.asarray(epsilon, dt)) + h.wd * w
        return w - eta_t * d, (mean, var)

    return from_rule(
        Rule(kernel, slots=("mean", "var"), wd_mode="kernel", elementwise=True),
        name="adamw",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1, beta2=beta2, epsilon=epsilon, correct_bias=correct_bias
        ),
        **common,
    )
