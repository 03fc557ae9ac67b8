r"""AdaGrad (MXNet ``AdaGrad``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def adagrad(learning_rate: float | None = None, eps: float = 1e-7, **common: Any) -> Optimizer:
    r"""AdaGrad (Duchi et al., 2011), as MXNet 1.9.1's dense update.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        h &\leftarrow h + \hat g^2 \\
        w &\leftarrow w - \eta\left(\frac{\hat g}{\sqrt{h + \epsilon}} + \lambda w\right)

    ε sits inside the square root; weight decay does not enter the history. The history
    is float32. ``clip_gradient`` follows MXNet's NDArray convention [Q7]: 0 zeroes the
    gradient.

    Args:
      learning_rate: η; ``None`` means 0.01.
      eps: ε > 0 (MXNet's ``float_stable_eps``).
      **common: the base arguments.
    """
    check_range("eps", eps, lo=0.0, lo_open=True)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        (hist,) = s
        hist = hist + g * g
        div = g / jnp.sqrt(hist + jnp.float32(eps))
        return w + (div + w * h.wd) * -h.lr, (hist,)

    return from_rule(
        Rule(
            kernel,
            slots=("history",),
            wd_mode="kernel",
            clip_mode="python",
            state_dtype="float32",
            elementwise=True,
        ),
        name="adagrad",
        learning_rate=learning_rate,
        hyperparams={"eps": eps},
        **common,
    )
