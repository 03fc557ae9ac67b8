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

SMALL = 1024  # XLA hands no sum below 4096 elements to YNNPACK



def sum_squares(x: jax.Array) -> jax.Array:
    """``sum(x**2)`` over all axes, in float32, in an order no thread count changes.

    XLA's CPU backend hands a plain ``jnp.sum`` of 4096 elements or more to YNNPACK,
    which splits the summed axes by the number of threads: 1 and 2 cores gave different
    bits for about 1 leaf in 4. No library takes a reduction of several operands, so the
    sum is taken by one reduction with two results: the sum, and whether any square is
    NaN (``sum`` is then NaN too, so the second result only keeps XLA from dropping
    it). The leaf keeps its shape and sharding (no reshape, no padded copy).

    A leaf of at most :data:`SMALL` elements (XLA keeps such sums on one thread), or of
    symbolic size (the multi-tensor layout proving a rule for every leaf shape,
    :mod:`~mxjax.optimizer._verify`; the CPU custom call then adds a leaf's elements in
    its own fixed order), is one plain sum.
    """
    x = x.astype(jnp.float32)
    sq = x * x
    if not isinstance(sq.size, int) or sq.size <= SMALL:
        return jnp.sum(sq)
    return _ordered_sum(sq)


@jax.custom_jvp
def _ordered_sum(sq: jax.Array) -> jax.Array:
    """``sum(sq)`` over all axes by one two-result reduction (see :func:`sum_squares`);
    differentiable (JAX has no derivative for a reduction with a custom reducer)."""
    total, nan = lax.reduce(
        (sq, sq != sq),
        (jnp.float32(0), False),
        lambda a, b: (a[0] + b[0], a[1] | b[1]),
        tuple(range(sq.ndim)),
    )
    return lax.select(nan, jnp.full_like(total, jnp.nan), total)


@_ordered_sum.defjvp
def _ordered_sum_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    (sq,), (dsq,) = primals, tangents
    return _ordered_sum(sq), jnp.sum(dsq)


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
