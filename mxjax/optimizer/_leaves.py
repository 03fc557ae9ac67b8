"""Leaf-by-leaf updates: one traced program per kind of leaf, not one per leaf.

The per-leaf layout, and the flat layout's leaves that no group takes, update each leaf
through :func:`~mxjax.optimizer._preamble.apply_rule`. Tracing that once per leaf makes
compile time grow with the tensor count (ResNet-50 has 161 tensors but 28 shapes).
:func:`apply_leaves` instead traces, under ``jit``, one program per *kind* of leaf (its
shape, dtypes and multipliers: everything but its name and index) as a nested ``jit``,
and calls it for each leaf of that kind: JAX traces and lowers it once, and XLA, which
inlines the calls, sees the same fused loops for every leaf of a shape and compiles each
distinct loop once.

A kernel may read its leaf's name or index (``h.name``, ``h.index``: LARS's exemptions,
SGLD's noise key, Nadam with ``order``); then its result depends on more than the kind.
The shared program is traced with stand-ins that refuse to be read
(:mod:`~mxjax.optimizer._probes`); a rule declaring ``per_leaf_scalars`` (which accepts
a traced ``h.index``, as the multi-tensor layout gives it) gets the index as a traced
argument instead. A kernel that reads a stand-in, or fails to trace for any other
reason, is run as before: traced leaf by leaf with its own name and index (an error of
the rule's own is raised there, unchanged). Outside a trace (eager calls) every leaf
runs op by op, as before.

Every product rounds before it is summed, as in MXNet
(:func:`~mxjax.optimizer._rounding.no_contraction`): each program is guarded, with the
``-0.0`` of every floating dtype computed once per step and handed to all of them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .. import _kernels
from ._contract import PerLeaf, Rule
from ._packed import _split
from ._preamble import _Config, _Leaf, apply_rule
from ._probes import IndexProbe, NameProbe
from ._rounding import no_contraction, opaque_zero


def apply_leaves(
    rule: Rule, cfg: _Config, leaves: list[tuple[int, _Leaf]], num_leaves: int,
    ws: list, gs: list, slots: list, kw: dict,
) -> tuple[list, list]:
    """Leaves ``(index, info)`` one by one through :func:`apply_rule`: their new weights
    and slot tuples. ``kw``: ``t``, ``lr`` and ``extra`` of this step."""
    if not leaves:
        return [], []
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((ws, gs, slots, kw)))
    kws = _per_leaf_kw(kw, [j for j, _ in leaves], traced)
    if traced:
        shared = _by_kind(rule, cfg, leaves, num_leaves, ws, gs, slots, kws)
        if shared is not None:
            return shared

    def run(ws: list, gs: list, slots: list, kws: list) -> tuple[list, list]:
        scalars: dict = {}  # lr * lr_mult and wd * wd_mult, traced once per multiplier
        out = [
            apply_rule(
                rule, cfg, info, w, g, s, index=j, num_leaves=num_leaves,
                scalars=scalars, **kw,
            )
            for (j, info), w, g, s, kw in zip(leaves, ws, gs, slots, kws, strict=True)
        ]
        return [w for w, _ in out], [s for _, s in out]

    return no_contraction(run, kw["t"])(ws, gs, slots, kws)


def _per_leaf_kw(kw: dict, indices: list[int], traced: bool) -> list[dict]:
    """``kw`` for each leaf of ``indices``: its ``extra`` with every :class:`PerLeaf`
    replaced by the tuple of the leaf's elements (under a trace each in a buffer of its
    own: :func:`unstack`)."""
    is_per_leaf = lambda x: isinstance(x, PerLeaf)  # noqa: E731
    found = [x for x in jax.tree.leaves(kw["extra"], is_leaf=is_per_leaf) if is_per_leaf(x)]
    if not found:
        return [kw] * len(indices)
    split = lambda v: unstack(v) if traced else list(v)  # noqa: E731
    rows = {id(x): list(zip(*(split(v) for v in x.vectors))) for x in found}
    return [
        dict(kw, extra=jax.tree.map(
            lambda x, j=j: rows[id(x)][j] if is_per_leaf(x) else x,
            kw["extra"], is_leaf=is_per_leaf,
        ))
        for j in indices
    ]


def unstack(v: jax.Array, chunk: int = 64) -> list[jax.Array]:
    """The elements of vector ``v`` as separate scalars, the same bits, each in a buffer
    of its own.

    A slice ``v[j]`` (a constant index) is a program of its own for XLA (~10 ms to
    compile each), as is a scalar computed alone. On the CPU with mxjax's kernel, one
    custom call copies them out (as ``Packed.unpack`` does); elsewhere one reduction of
    several results hands out ``chunk`` elements (on the bits: an OR with zeros), so a
    step has ``len(v) / chunk`` such programs (~1 ms of compile time per element).
    """
    if _kernels.available():
        return [jnp.reshape(x, ()) for x in _split(v, (1,) * v.shape[0])]
    bits = jnp.dtype(f"uint{jnp.dtype(v.dtype).itemsize * 8}")
    zero = jnp.zeros((), bits)
    out: list[jax.Array] = []
    for start in range(0, v.shape[0], chunk):
        part = jax.lax.bitcast_convert_type(v[start : start + chunk], bits)
        iota = jax.lax.iota(jnp.int32, part.shape[0])
        masked = tuple(jnp.where(iota == i, part, zero) for i in range(part.shape[0]))
        out += jax.lax.reduce(
            masked,
            (zero,) * len(masked),
            lambda a, b: tuple(x | y for x, y in zip(a, b, strict=True)),
            (0,),
        )
    return [jax.lax.bitcast_convert_type(x, v.dtype) for x in out]


def _by_kind(
    rule: Rule, cfg: _Config, leaves: list[tuple[int, _Leaf]], num_leaves: int,
    ws: list, gs: list, slots: list, kws: list[dict],
) -> tuple[list, list] | None:
    """:func:`apply_leaves` through one nested ``jit`` per kind of leaf, or ``None``
    where the rule's kernel does not trace without its leaf's name or index."""
    dtypes = {jnp.dtype(info.compute) for _, info in leaves} | {
        jnp.dtype(jnp.result_type(x)) for x in jax.tree.leaves((ws, slots))
    }
    zeros = {  # str keys: a pytree of arrays, the same for every program
        str(dt): opaque_zero(kws[0]["t"], dt)
        for dt in sorted(dtypes, key=str)
        if jnp.issubdtype(dt, jnp.floating)
    }
    programs: dict[_Leaf, Any] = {}
    new_ws, new_slots = [], []
    try:
        for (j, info), w, g, s, kw in zip(leaves, ws, gs, slots, kws, strict=True):
            kind = info._replace(name="")
            if kind not in programs:
                programs[kind] = jax.jit(
                    functools.partial(_program, rule, cfg, kind, num_leaves)
                )
            index = jnp.int32(j) if rule.per_leaf_scalars else None
            w_new, s_new = programs[kind](w, g, tuple(s), kw, index, zeros)
            new_ws.append(w_new)
            new_slots.append(tuple(s_new))
    except Exception:  # noqa: BLE001 - it reads h.name or h.index: leaf by leaf instead
        return None
    return new_ws, new_slots


def _program(
    rule: Rule, cfg: _Config, kind: _Leaf, num_leaves: int,
    w: Any, g: Any, slots: tuple, kw: dict, index: Any, zeros: dict,
) -> tuple[Any, tuple]:
    """One leaf of ``kind`` through :func:`apply_rule`, guarded, with stand-ins for its
    name (and its index, unless ``index`` is given traced)."""
    info = kind._replace(name=NameProbe())
    idx = IndexProbe() if index is None else index

    def body(w: Any, g: Any, slots: tuple, kw: dict) -> tuple[Any, tuple]:
        return apply_rule(
            rule, cfg, info, w, g, slots, index=idx, num_leaves=num_leaves, **kw
        )

    return no_contraction(body, kw["t"], zeros)(w, g, slots, kw)
