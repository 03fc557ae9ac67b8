r"""Nesterov accelerated gradient (MXNet ``NAG``)."""

from __future__ import annotations

from typing import Any

import jax

from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._sgd import _check_momentum


def _nag_kernel(momentum: float):
    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        (mom,) = s
        m = momentum * mom
        w1 = w - m + (momentum + 1) * (m - h.lr * (g + h.wd * w))
        mom = m - h.lr * (g + h.wd * w1)  # [Q9]: the updated weight, as MXNet's kernel
        return w1, (mom,)

    return kernel


def _sgd_update(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
    return (1 - h.lr * h.wd) * w - h.lr * g, s


def nag(learning_rate: float | None = None, momentum: float = 0.0, **common: Any) -> Optimizer:
    r"""Nesterov accelerated SGD (MXNet ``NAG``), as MXNet 1.9.1's in-place kernel runs it.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g), \quad m' = \mu m \\
        w_1 &= w - m' + (1+\mu)\,(m' - \eta(\hat g + \lambda w)) \\
        m &\leftarrow m' - \eta(\hat g + \lambda w_1), \qquad w \leftarrow w_1

    **Quirk [Q9]:** MXNet 1.9.1's ``nag_mom_update`` runs in place and reads the
    *already updated* weight ``w_1`` in the momentum's weight-decay term; mxjax reproduces
    it (with ``wd=0`` it is the textbook rule). With ``momentum=0`` this is plain
    ``w = (1 - ηλ) w - η ĝ``.

    Args:
      learning_rate: η; ``None`` means 0.01.
      momentum: μ in [0, 1).
      **common: the base arguments.
    """
    momentum = _check_momentum(momentum)
    rule = (
        Rule(_nag_kernel(momentum), slots=("momentum",), wd_mode="kernel", elementwise=True)
        if momentum > 0.0
        else Rule(_sgd_update, wd_mode="kernel", elementwise=True)
    )
    return from_rule(
        rule,
        name="nag",
        learning_rate=learning_rate,
        hyperparams={"momentum": momentum},
        **common,
    )
