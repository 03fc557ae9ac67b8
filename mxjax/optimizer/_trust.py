"""Per-tensor L2 norms and trust ratios shared by LARS, LAMB and LANS.

The norms reduce over every axis of the leaf. They are computed in float32 (as MXNet's
``multi_sum_sq``) and have a zero gradient at zero (so ``jax.grad`` through an update of an all-zero leaf stays finite).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import check_range


def l2_norm(x: jax.Array) -> jax.Array:
    """``sqrt(sum(x**2))`` over all axes, in float32, with a finite gradient at 0."""
    x = x.astype(jnp.float32)
    ss = jnp.sum(x * x)
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
