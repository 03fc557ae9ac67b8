r"""AdaBelief (MXNet 2.0 ``AdaBelief``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._adam import bias_corrected_lr, check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def adabelief(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    correct_bias: bool = True,
    **common: Any,
) -> Optimizer:
    r"""AdaBelief (Zhuang et al., 2020), as MXNet 2.0's fused ``adabelief_update``.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g \\
        s &\leftarrow \beta_2 s + (1-\beta_2)(\hat g - m)^2 + \epsilon \\
        w &\leftarrow w - \eta_t\,\frac{m}{\sqrt s + \epsilon}, \qquad
        \eta_t = \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
                  \ \text{(correct\_bias, else } \eta)

    **Quirks:** weight decay is L2-style and sits *inside* the clip (MXNet's docstring
    says otherwise; the kernel is followed) [Q16]; ``s`` uses the *new* ``m`` and gains
    ε on every step, and ε is added again to ``√s``. [Q26] ``rescale_grad=0`` skips the
    update (weights and moments) as MXNet's fused op does; the count still advances.

    Args:
      learning_rate: η (0.001).
      beta1, beta2: decay rates in [0, 1).
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
        eps = jnp.asarray(epsilon, dt)
        # MXNet's multi_adabelief_update form, rounding included: β(s - x) + x
        mean = b1 * (mean - g) + g
        adj = jnp.square(g - mean)
        var = b2 * (var - adj) + adj + eps  # see adamw: no FMA (the base's guards)
        eta_t = bias_corrected_lr(h.lr, beta1, beta2, h.t, correct_bias)
        return w - eta_t * (mean / (jnp.sqrt(var) + eps)), (mean, var)

    return from_rule(
        Rule(kernel, slots=("mean", "var"), wd_mode="in_clip", elementwise=True),
        name="adabelief",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1, beta2=beta2, epsilon=epsilon, correct_bias=correct_bias
        ),
        **common,
    )
