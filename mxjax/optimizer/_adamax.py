r"""Adamax (MXNet ``Adamax``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._adam import check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import one_minus_pow


def adamax(
    learning_rate: float = 0.002, beta1: float = 0.9, beta2: float = 0.999, **common: Any
) -> Optimizer:
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2014), as MXNet 1.9.1.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        u \leftarrow \max(\beta_2 u, |\hat g|) \\
        w &\leftarrow w - \frac{\eta}{1-\beta_1^t}\,\frac{m}{u}

    **Quirk [Q24]:** there is no ε, so a coordinate whose gradient has always been
    exactly 0 becomes NaN (0/0), as in MXNet 1.9.1. **[Q1]:** the default 0.002
    overrides a scheduler's ``base_lr`` unless ``learning_rate`` is given.
    ``clip_gradient`` follows the NDArray convention [Q7].

    Args:
      learning_rate: η (0.002).
      beta1, beta2: decay rates in [0, 1).
      **common: the base arguments.
    """
    check_betas(beta1=beta1, beta2=beta2)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        m, u = s
        lr_t = (h.lr.astype(jnp.float32) / one_minus_pow(beta1, h.t)).astype(w.dtype)
        m = m * jnp.asarray(beta1, w.dtype) + jnp.asarray(1.0 - beta1, w.dtype) * g
        u = jnp.maximum(jnp.asarray(beta2, w.dtype) * u, jnp.abs(g))
        return w - lr_t * m / u, (m, u)

    return from_rule(
        Rule(kernel, slots=("m", "u"), clip_mode="python", elementwise=True),
        name="adamax",
        learning_rate=learning_rate,
        hyperparams={"beta1": beta1, "beta2": beta2},
        **common,
    )
