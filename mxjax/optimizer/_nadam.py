r"""Nadam (MXNet ``Nadam``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._adam import check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, PerLeaf, Rule, Slots
from ._kernel_math import int_pow, one_minus_pow, scaled_powers
from ._rounding import unfused


def nadam(
    learning_rate: float = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    schedule_decay: float = 0.004,
    order: Sequence[str] | None = None,
    **common: Any,
) -> Optimizer:
    r"""Nesterov Adam (Dozat, 2016), as MXNet 1.9.1, with its global momentum schedule.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\,\mathrm{sd}}), \qquad
        S \leftarrow S\,\mu_t, \qquad S' = S\,\mu_{t+1} \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\hat g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\hat g^2 \\
        \bar m &= (1-\mu_t)\frac{\hat g}{1 - S} + \mu_{t+1}\frac{m}{1 - S'} \\
        w &\leftarrow w - \eta\,\frac{\bar m}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    **Quirk [Q15]:** MXNet keeps the momentum schedule ``S`` on the optimizer object and
    advances it on *every* per-parameter update, in parameter order. So with ``P``
    parameters, the ``j``-th leaf (0-based) at step ``k`` sees
    :math:`S = (\prod_{s<k}\mu_s)^P\,\mu_k^{j+1}`: the result depends on the number and
    order of the leaves. mxjax reproduces this; ``S`` lives in ``state.extra``. By
    default the order is the tree's (a dict's sorted keys: Gluon ``Trainer``'s order);
    pass ``order``, the leaf names in MXNet's index order, to match a ``Module`` run
    (its symbol's argument order: :func:`mxjax.mxnet_states.symbol_param_order` reads
    it from ``prefix-symbol.json``). **[Q1]:** the default lr overrides a scheduler's ``base_lr``.

    Args:
      learning_rate: η (0.001).
      beta1, beta2: decay rates in [0, 1).
      epsilon: ε > 0.
      schedule_decay: sd ≥ 0, the momentum-schedule decay.
      order: every leaf name once, in MXNet's index order (``None``: tree order).
      **common: the base arguments (``clip_gradient`` follows the NDArray convention).
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    check_range("schedule_decay", schedule_decay, lo=0.0)
    log096 = math.log(0.96) * schedule_decay
    position = _positions(order)

    def decay(t: jax.Array) -> jax.Array:  # mu(t) / beta1
        return 1 - 0.5 * jnp.exp(t.astype(jnp.float32) * log096)

    def prepare(m_schedule, t, lr, num_leaves):
        del lr
        mu_t, mu_next = jnp.float32(beta1) * decay(t), jnp.float32(beta1) * decay(t + 1)
        dens = None
        if position is None:
            # every leaf's S = m_schedule * mu_t**(j+1) at once, rounded as the kernel
            # rounds it (the bits of each static power under jit), 1 - S, 1 - S' and
            # their reciprocals: a leaf-by-leaf layout hands each leaf its own
            sched = unfused(m_schedule * scaled_powers(beta1, decay(t), num_leaves))
            den, den_next = 1 - sched, 1 - unfused(sched * mu_next)
            dens = PerLeaf(den, den_next, 1 / den, 1 / den_next)
        return (m_schedule, mu_t, mu_next, dens), m_schedule * mu_t**num_leaves

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        m, v = s
        sched_prev, mu_t, mu_next, dens = h.extra
        dt = w.dtype
        m = m * jnp.asarray(beta1, dt) + jnp.asarray(1.0 - beta1, dt) * g
        v = v * jnp.asarray(beta2, dt) + jnp.asarray(1.0 - beta2, dt) * g * g
        if isinstance(dens, tuple):  # this leaf's, handed out by a leaf-by-leaf layout
            den, den_next, inv, inv_next = dens  # 1 - S, 1 - S' and their reciprocals
        else:  # whole vectors (op by op, multi-tensor layout), or an order (no vectors)
            index = h.index if position is None else position(h.name, h.num_leaves)
            sched = sched_prev * int_pow(mu_t, index + 1, h.num_leaves + 1)
            den, den_next, inv = 1 - sched, 1 - sched * mu_next, None
        if inv is not None and dt == jnp.float32:
            # g / den as XLA computes it under jit (g * (1 / den)), the reciprocal
            # computed once per step for all leaves rather than in a program per leaf
            g_prime, m_prime = g * inv, m * inv_next
        else:
            g_prime, m_prime = g / den.astype(dt), m / den_next.astype(dt)
        v_prime = v / one_minus_pow(beta2, h.t).astype(dt)
        m_bar = (1 - mu_t).astype(dt) * g_prime + mu_next.astype(dt) * m_prime
        return w - h.lr * m_bar / (jnp.sqrt(v_prime) + jnp.asarray(epsilon, dt)), (m, v)

    return from_rule(
        Rule(
            kernel,
            slots=("m", "v"),
            clip_mode="python",
            init_extra=lambda: jnp.ones((), jnp.float32),
            prepare=prepare,
            elementwise=False,  # the schedule depends on the leaf's index
            per_leaf_scalars=order is None,  # an order is looked up by the leaf's name
        ),
        name="nadam",
        learning_rate=learning_rate,
        hyperparams=dict(
            beta1=beta1, beta2=beta2, epsilon=epsilon, schedule_decay=schedule_decay,
            **({} if order is None else {"order": list(order)}),
        ),
        **common,
    )


def _positions(order: Sequence[str] | None) -> Any:
    """``(name, num_leaves) -> index`` in ``order``, checked at trace time; or ``None``."""
    if order is None:
        return None
    if isinstance(order, str) or not all(isinstance(n, str) for n in order):
        raise TypeError(f"order must be a sequence of leaf names, got {order!r}")
    index = {n: i for i, n in enumerate(order)}
    if len(index) != len(order):
        raise ValueError(f"order names a leaf twice: {list(order)}")

    def position(name: str, num_leaves: int) -> int:
        if name not in index or len(index) != num_leaves:
            raise ValueError(
                f"nadam order {list(order)} must name every parameter once; parameter "
                f"{name!r} of {num_leaves} is not in it" if name not in index else
                f"nadam order names {len(index)} parameters, the tree has {num_leaves}"
            )
        return index[name]

    return position
