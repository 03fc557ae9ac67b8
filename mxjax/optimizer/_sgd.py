r"""SGD with optional momentum (MXNet ``SGD``, registry names ``sgd`` and ``ccsgd``)."""

from __future__ import annotations

from typing import Any

import jax

from .._validate import flag
from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def _check_momentum(momentum: float) -> float:
    check_range("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    return float(momentum)


def sgd_kernel(momentum: float) -> Rule:
    """The rule of MXNet's ``multi_sgd_update`` / ``multi_sgd_mom_update`` kernels."""

    def plain(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        if not h.decay:
            return w + -h.lr * g, s
        return w + (-(h.lr * h.wd) * w - h.lr * g), s

    def with_momentum(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        (mom,) = s
        mom = momentum * mom - h.lr * g if not h.decay else (
            momentum * mom - (h.lr * h.wd) * w - h.lr * g
        )
        return w + mom, (mom,)

    if momentum > 0.0:
        return Rule(with_momentum, slots=("momentum",), wd_mode="kernel", elementwise=True)
    return Rule(plain, wd_mode="kernel", elementwise=True)


def sgd(
    learning_rate: float | None = None,
    momentum: float = 0.0,
    lazy_update: bool = True,
    **common: Any,
) -> Optimizer:
    r"""Stochastic gradient descent, optionally with momentum (MXNet ``SGD``).

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        m &\leftarrow \mu m - \eta\lambda w - \eta \hat g \qquad (\mu > 0) \\
        w &\leftarrow w + m \qquad\text{or, for } \mu = 0,\quad
        w \leftarrow w + (-\eta\lambda w - \eta \hat g)

    Weight decay enters outside the clip. The momentum slot holds MXNet's *negative,
    lr-scaled* velocity (the increment added to ``w``) [Q10], so changing the learning
    rate does not rescale past momentum.

    Args:
      learning_rate: the step size η; ``None`` means 0.01 (or the scheduler's).
      momentum: μ in [0, 1); 0 keeps no state.
      lazy_update: accepted for MXNet compatibility; gradients are dense in JAX, so it
        has no effect.
      **common: the base arguments (``wd``, ``rescale_grad``, ``clip_gradient``,
        ``lr_scheduler``, ``multi_precision``, ...), see :func:`~mxjax.optimizer.from_rule`.

    Example:
      >>> import jax.numpy as jnp, mxjax as mx
      >>> opt = mx.optimizer.sgd(learning_rate=0.1, momentum=0.9)
      >>> p = {"fc_weight": jnp.ones(2)}
      >>> p, s = opt.update({"fc_weight": jnp.ones(2)}, opt.init(p), p)
      >>> p["fc_weight"]
      Array([0.9, 0.9], dtype=float32)
    """
    momentum = _check_momentum(momentum)
    flag("lazy_update", lazy_update)
    return from_rule(
        sgd_kernel(momentum),
        name="sgd",
        learning_rate=learning_rate,
        hyperparams={"momentum": momentum, "lazy_update": lazy_update},
        **common,
    )
