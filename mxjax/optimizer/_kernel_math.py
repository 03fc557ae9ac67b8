"""Helpers for kernels: MXNet's clip convention and float32 powers as MXNet rounds them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._contract import Hyper
from ._rounding import unfused


def rescale_clip(g: jax.Array, h: Hyper) -> jax.Array:
    """``clip(rescale_grad * g)`` with the optimizer's clip convention."""
    g = h.rescale_grad * g if h.rescale_grad != 1.0 else g
    return g if h.clip is None else jnp.clip(g, -h.clip, h.clip)

def one_minus_pow(beta: float, t: jax.Array) -> jax.Array:
    r"""``1 - beta**t`` in float32 without cancellation.

    Computed as ``-expm1(t * log(beta))`` with ``log(beta)`` taken in float64 on the
    host, so it equals MXNet's float64 Python algebra (``1 - beta**t``) to float32
    round-off even when ``beta`` is close to 1.
    """
    if beta == 0.0:
        return jnp.ones((), jnp.float32)
    return -jnp.expm1(t.astype(jnp.float32) * jnp.float32(math.log(beta)))

def pow_f32(beta: float, t: jax.Array) -> jax.Array:
    """``beta**t`` rounded to float32, as C++ ``powf`` on a float32 ``beta`` gives it."""
    if beta == 0.0:
        return jnp.where(t == 0, 1.0, 0.0).astype(jnp.float32)
    lb = math.log(float(np.float32(beta)))
    return 1.0 + jnp.expm1(t.astype(jnp.float32) * jnp.float32(lb))

def int_pow(x: jax.Array, n: int | jax.Array, bound: int) -> jax.Array:
    """``x ** n`` for an integer ``0 <= n < bound``, static or traced.

    A static ``n`` is ``lax.integer_pow``; a traced one runs the same multiplications
    (binary powering) under masks, so both give the same bits.
    """
    if isinstance(n, int):
        return x**n
    acc, base = jnp.ones_like(x), x
    for bit in range(max(1, int(bound).bit_length())):
        acc = jnp.where((n >> bit) & 1 == 1, acc * base, acc)
        base = base * base
    return acc

def scaled_powers(beta: float, s: jax.Array, count: int) -> jax.Array:
    """``(beta * s) ** k`` for ``k = 1 .. count`` (a float32 vector), with the bits
    ``jit`` gives each static power ``(jnp.float32(beta) * s) ** k``.

    XLA folds the constant out of a static integer power: ``(beta * s) ** k`` is
    computed as ``s**k * beta**k``, both by ``lax.integer_pow``'s binary powering in
    float32 and ``beta**k`` folded at compile time. This computes every ``k`` at once in
    those operations (``beta**k`` on the host, ``s**k`` by :func:`int_pow`'s masked
    products, the same multiplications), so a step needs one vector, not one scalar
    program per power.
    """
    k = np.arange(1, count + 1)
    consts, base = np.ones(count, np.float32), np.float32(beta)
    for bit in range(count.bit_length()):
        consts = np.where((k >> bit) & 1 == 1, consts * base, consts)
        base = base * base
    powers = int_pow(jnp.broadcast_to(s, (count,)), jnp.asarray(k, jnp.int32), count + 1)
    return unfused(powers * consts)
