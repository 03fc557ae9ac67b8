"""Per-tensor L2 norms and trust ratios shared by LARS, LAMB and LANS.

The norms reduce over every axis of the leaf. They are computed in float32 (as MXNet's
``multi_sum_sq``) and have a zero gradient at zero (so ``jax.grad`` through an update of an all-zero leaf stays finite).
Their bits do not depend on how many threads XLA has, so a resumed run gives the same
bits on another machine: see :func:`sum_squares`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .._validate import real as check_range

# A leaf of more elements is summed as SLABS partial sums (below 4096 elements a plain
# sum stays on one thread: XLA hands no smaller reduction to YNNPACK).
SMALL = 1024
SLABS = 8


def sum_squares(x: jax.Array) -> jax.Array:
    """``sum(x**2)`` over all axes, in float32, in an order no thread count changes.

    A leaf of at most :data:`SMALL` elements is one plain sum. A larger one is cut (flat,
    zero-padded) into :data:`SLABS` equal contiguous slabs, summed by one reduction with
    a result per slab, and the slab sums are added in slab order. XLA's CPU backend
    splits a reduction across threads only over its results (here scalars), and no
    library takes over a reduction of several operands. A plain ``jnp.sum`` of 4096
    elements or more goes to YNNPACK, which splits the summed axis by the number of
    threads: 1 and 2 cores gave different bits for about 1 leaf in 4 (and XLA folds a
    sum of partial sums back into one sum, so a two-stage ``jnp.sum`` does not help).
    The slabs also give the loop independent chains of additions, so it stays fast.

    A leaf of symbolic size (the multi-tensor layout proving a rule for every leaf
    shape, :mod:`~mxjax.optimizer._verify`) is one plain sum: the CPU custom call adds
    a leaf's elements in its own fixed order, and XLA's flat path calls this again on
    each leaf's concrete slice.
    """
    x = x.astype(jnp.float32)
    n = x.size
    if not isinstance(n, int) or n <= SMALL:
        return jnp.sum(x * x)
    x = x.reshape(-1)
    per = -(-n // SLABS)
    sq = jnp.pad(x * x, (0, SLABS * per - n)).reshape(SLABS, per)
    sums = lax.reduce(
        tuple(sq[i] for i in range(SLABS)),
        (jnp.float32(0),) * SLABS,
        lambda a, b: tuple(p + q for p, q in zip(a, b)),
        (0,),
    )
    total = sums[0]
    for s in sums[1:]:
        total = total + s
    return total


def l2_norm(x: jax.Array) -> jax.Array:
    """``sqrt(sum(x**2))`` over all axes, in float32, with a finite gradient at 0."""
    ss = sum_squares(x)
    pos = ss > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, ss, 1.0)), 0.0)


def safe_div(num: jax.Array, den: jax.Array, ok: jax.Array) -> jax.Array:
    """``num / den`` where ``ok``, else 1 (no NaN gradient from the unused branch)."""
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 1.0)


def clamp_norm(r: jax.Array, lower: float | None, upper: float | None) -> jax.Array:
    """MXNet's optional bounds on ``||w||``; 0 or ``None`` is ignored [Q20]."""
    if lower:
        r = jnp.maximum(r, jnp.float32(lower))
    if upper:
        r = jnp.minimum(r, jnp.float32(upper))
    return r


def check_bounds(lower_bound: float | None, upper_bound: float | None) -> None:
    """Validate LAMB/LANS ``lower_bound``/``upper_bound`` (``None`` or a real >= 0)."""
    check_range("lower_bound", lower_bound, lo=0.0, none_ok=True)
    check_range("upper_bound", upper_bound, lo=0.0, none_ok=True)
    if lower_bound and upper_bound and lower_bound > upper_bound:
        check_range(
            "upper_bound", upper_bound, lo=lower_bound, lo_name="lower_bound", none_ok=True
        )
