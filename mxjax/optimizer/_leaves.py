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
The shared program is traced with stand-ins that raise when read
(:mod:`~mxjax.optimizer._probes`); a kind whose kernel reads one is traced leaf by leaf
with its leaves' own names and indices, as before (every kind is traced before any call is
emitted, so a refused kind leaves nothing behind). So is every leaf of a step whose ``kw``
holds anything but arrays (a Python scalar would become a traced argument). Values that
differ by leaf (:class:`~mxjax.optimizer.PerLeaf`) reach each leaf as scalars of its own.
The programs live as long as the optimizer, so eager ``jax.grad`` or ``jax.vmap`` of an
update compiles them once. Outside any trace every leaf runs op by op, as before.

Every product rounds before it is summed, as in MXNet
(:func:`~mxjax.optimizer._rounding.no_contraction`): each program is guarded, with the
``-0.0`` of every floating dtype computed once per step and handed to all of them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _kernels
from ._contract import PerLeaf, Rule
from ._packed import _split
from ._preamble import _Config, _Leaf, apply_rule
from ._probes import IndexProbe, IndexRead, NameProbe, NameRead, read_probe
from ._rounding import no_contraction, opaque_zero


class LeafSteps:
    """One optimizer's leaf-by-leaf updates (see the module docstring): call it with
    ``(leaves, num_leaves, ws, gs, slots, kw)``, leaves ``(index, info)``, to get their
    new weights and slot tuples; ``kw``: ``t``, ``lr`` and ``extra`` of the step."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg
        # (kind, num_leaves) -> its jitted program, or None where the kernel reads the
        # leaf's name or index
        self._programs: dict[tuple[_Leaf, int], Any] = {}

    def __call__(
        self, leaves: list[tuple[int, _Leaf]], num_leaves: int, ws: list, gs: list,
        slots: list, kw: dict,
    ) -> tuple[list, list]:
        if not leaves:
            return [], []
        traced = any(
            isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((ws, gs, slots, kw))
        )
        kws = _per_leaf_kw(kw, [j for j, _ in leaves], num_leaves, traced)
        if traced and all(map(_is_array, jax.tree.leaves(kw))):
            shared = self._by_kind(leaves, num_leaves, ws, gs, slots, kws)
            if shared is not None:
                return shared
        return self._one_by_one(leaves, num_leaves, ws, gs, slots, kws)

    def _one_by_one(
        self, leaves: list[tuple[int, _Leaf]], num_leaves: int, ws: list, gs: list,
        slots: list, kws: list[dict],
    ) -> tuple[list, list]:
        """Every leaf traced on its own, with its own name and index, guarded."""

        def run(ws: list, gs: list, slots: list, kws: list) -> tuple[list, list]:
            scalars: dict = {}  # lr * lr_mult and wd * wd_mult, traced once per multiplier
            out = [
                apply_rule(
                    self.rule, self.cfg, info, w, g, s, index=j, num_leaves=num_leaves,
                    scalars=scalars, **kw,
                )
                for (j, info), w, g, s, kw in zip(leaves, ws, gs, slots, kws, strict=True)
            ]
            return [w for w, _ in out], [s for _, s in out]

        return no_contraction(run, kws[0]["t"])(ws, gs, slots, kws)

    def _program(self, kind: _Leaf, num_leaves: int) -> Any:
        key = (kind, num_leaves)
        if key not in self._programs:
            self._programs[key] = jax.jit(
                functools.partial(_program, self.rule, self.cfg, kind, num_leaves)
            )
        return self._programs[key]

    def _by_kind(
        self, leaves: list[tuple[int, _Leaf]], num_leaves: int, ws: list, gs: list,
        slots: list, kws: list[dict],
    ) -> tuple[list, list] | None:
        """Every leaf through its kind's program; ``None`` if a kind is refused."""
        dtypes = {jnp.dtype(info.compute) for _, info in leaves} | {
            jnp.dtype(jnp.result_type(x)) for x in jax.tree.leaves((ws, gs, slots))
        }
        zeros = {  # by dtype name: a pytree of arrays, the same for every program
            str(dt): opaque_zero(kws[0]["t"], dt)
            for dt in sorted(dtypes, key=str)
            if jnp.issubdtype(dt, jnp.floating)
        }
        calls, seen = [], set()
        for (j, info), w, g, s, kw in zip(leaves, ws, gs, slots, kws, strict=True):
            kind = info._replace(name="")
            args = (w, g, tuple(s), kw, zeros)
            specs = tuple(_spec(x) for x in jax.tree.leaves(args))
            key = (kind, jax.tree.structure(args), specs)
            if key not in seen:  # trace each kind and signature before emitting anything
                seen.add(key)
                if not self._traces(kind, num_leaves, args):
                    return None
            calls.append((self._program(kind, num_leaves), args))
        out = [program(*args) for program, args in calls]
        return [w for w, _ in out], [tuple(s) for _, s in out]

    def _traces(self, kind: _Leaf, num_leaves: int, args: tuple) -> bool:
        """Whether ``kind``'s program traces without its leaf's name or index."""
        key = (kind, num_leaves)
        if self._programs.get(key, True) is None:
            return False
        try:
            self._program(kind, num_leaves).trace(*args)
        except (NameRead, IndexRead, TypeError) as e:
            if not read_probe(e):
                raise
            self._programs[key] = None
            return False
        return True


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _spec(x: Any) -> Any:
    return jax.typeof(x)  # shape, dtype, weak type (and sharding)


def _per_leaf_kw(
    kw: dict, indices: list[int], num_leaves: int, traced: bool
) -> list[dict]:
    """``kw`` for each leaf of ``indices``. Under a trace its ``extra`` has every
    :class:`PerLeaf` replaced by the tuple of the leaf's elements, each in a buffer of its
    own (:func:`unstack`); outside one (op by op, nothing to share) it is left whole, as
    for the multi-tensor layout."""
    is_per_leaf = lambda x: isinstance(x, PerLeaf)  # noqa: E731
    found = [x for x in jax.tree.leaves(kw["extra"], is_leaf=is_per_leaf) if is_per_leaf(x)]
    if not found or not traced:
        return [kw] * len(indices)
    for x in found:
        for v in x.vectors:
            if jnp.ndim(v) != 1 or jnp.shape(v)[0] != num_leaves:
                raise ValueError(
                    f"a PerLeaf holds vectors of one element per leaf ({num_leaves}); "
                    f"got one of shape {jnp.shape(v)}"
                )
    rows = {id(x): list(zip(*(unstack(v) for v in x.vectors), strict=True)) for x in found}
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


def _program(
    rule: Rule, cfg: _Config, kind: _Leaf, num_leaves: int,
    w: Any, g: Any, slots: tuple, kw: dict, zeros: dict,
) -> tuple[Any, tuple]:
    """One leaf of ``kind`` through :func:`apply_rule`, guarded, with stand-ins for its
    name and index."""
    info = kind._replace(name=NameProbe())

    def body(w: Any, g: Any, slots: tuple, kw: dict) -> tuple[Any, tuple]:
        return apply_rule(
            rule, cfg, info, w, g, slots, index=IndexProbe(), num_leaves=num_leaves, **kw
        )

    return no_contraction(body, kw["t"], zeros)(w, g, slots, kw)
