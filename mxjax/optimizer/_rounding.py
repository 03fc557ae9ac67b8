r"""MXNet's rounding under ``jit``: a product rounds before it is summed.

MXNet evaluates an update one operation at a time (NDArray calls, or C++ kernels built
without FMA contraction), so in ``g * rescale_grad + wd * w`` each product is rounded to
float32 before the sum. Under ``jax.jit`` on the CPU, LLVM contracts a product that
feeds an addition into one fused multiply-add, which rounds once: 1 ulp, and up to
~1000× that in updates that cancel, such as AdaBelief's ``β₂(s − x) + x``. (XLA also
reassociates ``(a * c1) * c2`` as ``a * (c1 * c2)``.)

:func:`no_contraction` makes a traced function round its products as MXNet does,
without asking each kernel to remember it: it traces the function to a jaxpr once and
re-emits it with ``-0.0`` added to each floating product (``mul``, ``integer_pow``,
``square``) that feeds a sum, product or quotient, recursing into nested ``jit`` calls.
The ``-0.0`` is computed at run time from the step count (:func:`opaque_zero`), so
neither XLA nor LLVM can drop it; ``p + (-0.0)`` is ``p`` exactly (NaN, ±0 and ±Inf
included), so when LLVM contracts the product into it (``fma(a, b, -0.0)``) that rounds
``a * b`` once, and the sum that follows rounds again: MXNet's two roundings, at no cost
in instructions (the FMA replaces the multiply). :func:`unfused`'s select is re-emitted as
the same addition. A multiplication by an opaque one would
not do: XLA gathers scalar factors (``(p * one) * s`` becomes ``p * (one * s)``). Everything
else is re-emitted as it is. Outside a trace (eager calls) the function runs unchanged.

Not guarded, because a guard there splits XLA's fusions (a full-size temporary and ~2×
the step time): XLA's rewrites of ``a / sqrt(b)`` as ``a * rsqrt(b)`` and of a division by
a scalar as a product with its reciprocal, which eager JAX makes too. They are ~1 ulp,
not amplified by any built-in update, and within the MXNet parity tolerances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core

_PRODUCTS = frozenset({"mul", "integer_pow", "square"})
# Consumers that could fold a product with one rounding fewer: sums (FMA contraction),
# products and quotients (XLA reassociates ``(a * c1) * c2`` as ``a * (c1 * c2)``), and
# whatever uses an inlined call's result.
_FOLDING = frozenset({"add", "sub", "neg", "add_any", "reduce_sum", "mul", "div"})
# Call primitives whose body is inlined (so the operations inside are guarded too).
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
_RETURNED = "<returned>"  # a call body's result: its consumers are outside the body


def unfused(x: jax.Array) -> jax.Array:
    """``x``, rounded to its dtype before the next operation (no FMA contraction).

    The select hides the value from XLA's and LLVM's rewrites (``lax.optimization_barrier``
    and ``reduce_precision`` are optimised away); the value is unchanged, NaN included.
    The base also applies it to every new parameter: XLA on CPU runs an elementwise op
    that is fused with nothing (such as SGD's ``w + m'``, where ``m'`` is itself an
    output) ~4x slower than a fusion. Under :func:`no_contraction` (every jitted step)
    the select is re-emitted as the cheaper ``x + opaque_zero`` (no compare, no blend);
    the custom call's translator drops it.
    """
    # lax.select, not jnp.where: no nested jit to trace per leaf shape (same program)
    # (lax.full_like: the NaN operand keeps x's sharding, explicit sharding included)
    x = jnp.asarray(x)
    return jax.lax.select(x == x, x, jax.lax.full_like(x, jnp.nan))


def opaque_zero(counter: jax.Array, dtype: Any) -> jax.Array:
    """``-0.0`` in ``dtype``, computed at run time from the integer ``counter``.

    ``x + (-0.0)`` is ``x`` exactly for every ``x`` (``-0``, ``+0``, NaN and ±Inf
    included), but neither XLA nor LLVM may drop the addition of a value it cannot see:
    ``c = float32((counter & 0x7FFF) | 1)`` is odd and positive, so finite and non-zero,
    ``c - c`` is ``+0``, and ``-(c - c) / c`` is ``-0.0``; without fast-math flags neither
    compiler folds ``x - x`` (NaN for ``x`` = ±Inf or NaN), and the counter passes an
    optimization barrier, so a count known when compiling (``init`` and ``update`` in one
    ``jit``) is not folded either. The division comes last, so XLA computes the value in
    one scalar fusion per step and dtype and hands it to every loop (a cheap op at the end
    would be copied into each).
    """
    c = ((jax.lax.optimization_barrier(jnp.asarray(counter)) & 0x7FFF) | 1).astype(
        jnp.float32
    )
    return (-(c - c) / c).astype(dtype)


def _consumers(jaxpr: core.Jaxpr, inlined: bool) -> dict[Any, set[str]]:
    uses: dict[Any, set[str]] = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not isinstance(v, core.Literal):
                uses.setdefault(v, set()).add(eqn.primitive.name)
    if inlined:
        for v in jaxpr.outvars:
            if not isinstance(v, core.Literal):
                uses.setdefault(v, set()).add(_RETURNED)
    return uses


def _emit(
    jaxpr: core.Jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    inlined: bool,
    zero: Callable[[Any], jax.Array],
) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, core.Literal) else env[v]

    uses = _consumers(jaxpr, inlined)
    defs = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}
    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        body = eqn.params.get("jaxpr")
        if name in _CALLS and isinstance(body, core.ClosedJaxpr):
            outs = _emit(body.jaxpr, body.consts, ins, inlined=True, zero=zero)
        elif _is_unfused(eqn, defs):  # the same guard, cheaper
            outs = [zero(ins[2].dtype) + ins[2]]
        else:
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
            if name in _PRODUCTS:
                outs = [
                    zero(x.dtype) + x
                    if jnp.issubdtype(x.dtype, jnp.floating)
                    and uses.get(v, set()) & (_FOLDING | {_RETURNED})
                    else x
                    for v, x in zip(eqn.outvars, outs)
                ]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _is_unfused(eqn: core.JaxprEqn, defs: dict) -> bool:
    """Whether ``eqn`` is :func:`unfused`'s ``select(x == x, x, nan)``."""
    if eqn.primitive.name != "select_n" or len(eqn.invars) != 3:
        return False
    pred, nan, x = (defs.get(v) if isinstance(v, core.Var) else None for v in eqn.invars)
    return (
        pred is not None
        and nan is not None
        and pred.primitive.name == "eq"
        and pred.invars[0] is pred.invars[1] is eqn.invars[2]
        and nan.primitive.name == "broadcast_in_dim"
        and isinstance(nan.invars[0], core.Literal)
        and bool(np.isnan(np.asarray(nan.invars[0].val)).all())
    )


def no_contraction(
    f: Callable[..., Any], counter: Any, zeros: dict | None = None
) -> Callable[..., Any]:
    """``f`` with every floating product that a consumer could fold away rounded first.

    ``f``'s arguments must be pytrees of arrays; what it closes over is kept. Under a
    trace the result is computed by the same operations as ``f``, plus an addition of
    :func:`opaque_zero` of ``counter`` (an integer scalar: the step count) where a
    rounding is needed; outside one, ``f`` runs as it is. ``zeros``: those values already
    made, by dtype name (shared by several programs of one step).

    The ``-0.0`` is the left operand (``-0.0 + p``, the same value as ``p + -0.0``): XLA
    numbers a fused loop's operands in the order it meets them, and a value shared by
    every leaf met first is numbered alike in every leaf's loop, so leaves of one shape
    get identical loops, which XLA compiles once (on the right, the first leaf of each
    shape got a loop of its own: ResNet-50's SGD step compiled 76 loops instead of 58).
    """

    def rounded(*args: Any) -> Any:
        leaves = jax.tree.leaves(args)
        if not any(isinstance(x, jax.core.Tracer) for x in leaves):
            return f(*args)
        closed, shape = jax.make_jaxpr(f, return_shape=True)(*args)
        made: dict[str, jax.Array] = dict(zeros or {})

        def zero(dtype: Any) -> jax.Array:  # one per dtype, traced once
            key = str(jnp.dtype(dtype))
            if key not in made:
                made[key] = opaque_zero(counter, dtype)
            return made[key]

        outs = _emit(closed.jaxpr, closed.consts, leaves, inlined=False, zero=zero)
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    return rounded
