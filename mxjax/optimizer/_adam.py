r"""Adam (MXNet ``Adam``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import one_minus_pow


def check_betas(**betas: float) -> None:
    for name, beta in betas.items():
        check_range(name, beta, lo=0.0, hi=1.0, hi_open=True)


def bias_corrected_lr(
    lr: jax.Array, beta1: float, beta2: float, t: jax.Array, correct_bias: bool
) -> jax.Array:
    """``lr·sqrt(1-β2^t)/(1-β1^t)`` (MXNet's float64 Python algebra, rounded once), or
    ``lr`` when ``correct_bias`` is off."""
    if not correct_bias:
        return lr
    corr = jnp.sqrt(one_minus_pow(beta2, t)) / one_minus_pow(beta1, t)
    return (lr.astype(jnp.float32) * corr).astype(lr.dtype)


def adam(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    lazy_update: bool = True,
    **common: Any,
) -> Optimizer:
    r"""Adam (Kingma & Ba, 2014) with MXNet's bias correction folded into the lr.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\hat g^2 \\
        w &\leftarrow w - \eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
             \frac{m}{\sqrt{v} + \epsilon}

    .. warning::
       ε is added to :math:`\sqrt{v}`, not to the bias-corrected :math:`\sqrt{\hat v}`,
       so this is not ``optax.adam`` (equal only with ``eps' = eps / sqrt(1-beta2^t)``)
       [Q14]. Weight decay is L2-style: it enters the gradient *inside* the clip and
       the moments [Q16]. ``t`` counts from ``begin_num_update`` [Q6].

    **Quirk [Q1]:** with an ``lr_scheduler`` and no explicit ``learning_rate``, the
    default 0.001 overrides the scheduler's ``base_lr`` (with a warning).

    Args:
      learning_rate: η (0.001).
      beta1, beta2: moment decay rates in [0, 1).
      epsilon: ε > 0.
      lazy_update: accepted for MXNet compatibility (no effect on dense gradients).
      **common: the base arguments.
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    flag("lazy_update", lazy_update)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        mean, var = s
        b1, b2 = jnp.float32(beta1).astype(w.dtype), jnp.float32(beta2).astype(w.dtype)
        mean = b1 * mean + (1 - b1) * g
        var = b2 * var + (1 - b2) * g * g
        lr_t = bias_corrected_lr(h.lr, beta1, beta2, h.t, True)
        return w - lr_t * mean / (jnp.sqrt(var) + jnp.asarray(epsilon, w.dtype)), (
            mean,
            var,
        )

    return from_rule(
        Rule(kernel, slots=("mean", "var"), elementwise=True),
        name="adam",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1, beta2=beta2, epsilon=epsilon, lazy_update=lazy_update
        ),
        **common,
    )
