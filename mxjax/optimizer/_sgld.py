r"""Stochastic Gradient Langevin Dynamics (MXNet ``SGLD``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import integer
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def sgld(learning_rate: float | None = None, seed: int = 0, **common: Any) -> Optimizer:
    r"""Stochastic Gradient Langevin Dynamics (Welling & Teh, 2011; MXNet ``SGLD``).

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        w &\leftarrow w - \tfrac{\eta}{2}(\hat g + \lambda w) \\
        w &\leftarrow w + \sqrt{\eta}\,\xi, \qquad \xi \sim \mathcal N(0, I)

    Each update adds Gaussian noise of variance η, drawn in the weight's compute dtype
    (float32 on the master copy under ``multi_precision``), so the iterates sample from
    :math:`\propto \exp(-\mathrm{rescale\_grad}\cdot\mathrm{loss})`. Weight decay enters
    outside the clip; ``clip_gradient`` follows MXNet's NDArray convention [Q7].

    **Randomness [Q13].** MXNet draws the noise from its global RNG, which cannot be
    reproduced. mxjax carries a PRNG key in ``state.extra`` instead: ``init`` makes it
    from ``seed``; every update splits it into the next state's key and a step key, and
    leaf ``i`` (tree order) draws from ``jax.random.fold_in(step_key, i)``. The same
    ``seed``, parameters and gradients therefore give the same trajectory, under ``jit``
    and ``vmap`` alike; to vary the noise, change ``seed`` (or replace ``state.extra``
    with ``jax.random.key_data(key)`` of another key). Parity with MXNet holds for the
    deterministic part only.

    Args:
      learning_rate: η; ``None`` means 0.01 (or the scheduler's).
      seed: an int seeding the noise (0).
      **common: the base arguments.

    Raises:
      TypeError: ``seed`` is not an int.
      ValueError: ``seed`` is outside the int64 range ``jax.random.key`` accepts.

    References:
      Welling & Teh, `Bayesian Learning via Stochastic Gradient Langevin Dynamics
      <https://www.stats.ox.ac.uk/~teh/research/compstats/WelTeh2011a.pdf>`_, ICML 2011.
    """
    seed = integer("seed", seed, lo=-(2**63), hi=2**63 - 1)

    def init_extra() -> jax.Array:
        return jax.random.key_data(jax.random.key(seed))

    def prepare(key_data, t, lr, num_leaves):
        del t, lr, num_leaves
        step_key, next_key = jax.random.split(jax.random.wrap_key_data(key_data))
        return step_key, jax.random.key_data(next_key)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        w = w + (-h.lr / 2) * (g + h.wd * w)
        xi = jax.random.normal(jax.random.fold_in(h.extra, h.index), w.shape, w.dtype)
        return w + jnp.sqrt(h.lr) * xi, s

    return from_rule(
        Rule(
            kernel,
            wd_mode="kernel",
            clip_mode="python",
            init_extra=init_extra,
            prepare=prepare,
            elementwise=False,  # noise drawn per leaf
        ),
        name="sgld",
        learning_rate=learning_rate,
        hyperparams={"seed": seed},
        **common,
    )
