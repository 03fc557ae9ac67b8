r"""RMSProp, plain and centered (MXNet 1.9.1 ``RMSProp``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def rmsprop(
    learning_rate: float = 0.001,
    gamma1: float = 0.9,
    gamma2: float = 0.9,
    epsilon: float = 1e-8,
    centered: bool = False,
    clip_weights: float | None = None,
    **common: Any,
) -> Optimizer:
    r"""RMSProp (Tieleman & Hinton) and its centered variant (Graves), as MXNet 1.9.1.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        \text{plain:}\quad n &\leftarrow (1-\gamma_1)\hat g^2 + \gamma_1 n, \qquad
        w \leftarrow w - \eta\,\frac{\hat g}{\sqrt{n + \epsilon}} \\
        \text{centered:}\quad n &\leftarrow (1-\gamma_1)\hat g^2 + \gamma_1 n, \quad
        \bar g \leftarrow (1-\gamma_1)\hat g + \gamma_1 \bar g \\
        \Delta &\leftarrow \gamma_2\Delta - \eta\,\frac{\hat g}{\sqrt{n - \bar g^2 + \epsilon}},
        \qquad w \leftarrow w + \Delta

    then, if ``clip_weights`` is positive, ``w = clip(w, -clip_weights, clip_weights)``.
    Weight decay enters *inside* the clip; ε sits *inside* the square root (1.9.1; MXNet
    2.0 moved it outside for the plain variant [Q21]). The state is float32 (MXNet creates
    it without a dtype). Slots: ``(n,)`` plain, ``(n, g, delta)`` centered.

    **Quirk [Q1]:** built with an ``lr_scheduler`` and no explicit ``learning_rate``, the
    default 0.001 overrides the scheduler's ``base_lr`` (with a warning).

    Args:
      learning_rate: η (0.001).
      gamma1: decay of the squared-gradient average, in [0, 1).
      gamma2: momentum of the centered variant, in [0, 1).
      epsilon: ε > 0.
      centered: use the centered (Graves 2013) variant.
      clip_weights: clip the weights to ``[-clip_weights, clip_weights]`` after each
        step; ``None``, 0 or negative (MXNet's convention) means no clipping.
      **common: the base arguments.
    """
    check_range("gamma1", gamma1, lo=0.0, hi=1.0, hi_open=True)
    check_range("gamma2", gamma2, lo=0.0, hi=1.0, hi_open=True)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    flag("centered", centered)
    check_range("clip_weights", clip_weights, none_ok=True)
    cw = float(clip_weights) if clip_weights is not None and clip_weights > 0 else None

    def finish(w: jax.Array) -> jax.Array:
        return w if cw is None else jnp.clip(w, -cw, cw)

    def plain(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        (n,) = s
        n = (1 - jnp.float32(gamma1)) * g * g + jnp.float32(gamma1) * n
        return finish(w - h.lr * (g / jnp.sqrt(n + jnp.float32(epsilon)))), (n,)

    def alex(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        n, gbar, delta = s
        g1 = jnp.float32(gamma1)
        n = (1 - g1) * g * g + g1 * n
        gbar = (1 - g1) * g + g1 * gbar
        delta = jnp.float32(gamma2) * delta - h.lr * (
            g / jnp.sqrt(n - gbar * gbar + jnp.float32(epsilon))
        )
        return finish(w + delta), (n, gbar, delta)

    rule = (
        Rule(alex, slots=("n", "g", "delta"), state_dtype="float32", elementwise=True)
        if centered
        else Rule(plain, slots=("n",), state_dtype="float32", elementwise=True)
    )
    return from_rule(
        rule,
        name="rmsprop",
        learning_rate=learning_rate,
        hyperparams=dict(
            gamma1=gamma1,
            gamma2=gamma2,
            epsilon=epsilon,
            centered=centered,
            clip_weights=clip_weights,
        ),
        **common,
    )
