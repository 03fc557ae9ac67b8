r"""Packed parameters: a model's leaves kept in a few flat buffers from step to step.

``packed = opt.pack(params)`` lays the leaves of ``params`` back to back in one flat
buffer per group of the optimizer's multi-tensor layout (:mod:`mxjax.optimizer._multi`:
leaves sharing a dtype, master-copy flag, ``lr_mult`` and ``wd_mult``). A
:class:`Packed` is a pytree whose leaves are those buffers, so it goes through
``jax.jit``, ``jax.grad``, donation, sharding and checkpoints like any tree, and::

    state = opt.init(packed)
    loss_of_packed = lambda p, batch: loss(p.unpack(), batch)
    grads = jax.grad(loss_of_packed)(packed, batch)     # a Packed of the same layout
    packed, state = opt.update(grads, state, packed)

``unpack()`` is one ``lax.split`` per buffer (plus reshapes), whose gradient is one
concatenation: the model reads its leaves from the buffers, and the optimizer step, with
``multi_tensor=True``, is one custom call per group over the whole buffer (one fused XLA
kernel off the CPU), whatever the number of leaves. Without packing, JAX passes each
parameter and gradient across the jit boundary separately and XLA runs one kernel per
leaf: with thousands of leaves that, not the arithmetic, is the cost of a step.

The numbers are those of the unpacked update, element for element (the same program on
the same values; tested bitwise), and the state is the unpacked multi-tensor state: a
state from ``opt.init(params)`` works with ``opt.pack(params)`` and back. An optimizer
whose layout the buffers do not fit (``multi_tensor=False``, a rule that is not
elementwise, another optimizer's grouping) still accepts a :class:`Packed`: it unpacks,
updates leaf by leaf and packs again (correct, not faster).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _kernels
from .._names import path_name
from .._typing import PyTree

_LAYOUTS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    """Where each leaf of a tree lies in a :class:`Packed`'s buffers (static).

    Attributes:
      treedef: the unpacked tree's structure.
      names: each leaf's name (:func:`mxjax.optimizer.leaf_names`), in tree order.
      shapes: each leaf's shape.
      dtypes: each leaf's dtype name.
      groups: per buffer, the indices of the leaves it holds, in order. Empty leaves
        belong to no buffer.
    """

    treedef: Any
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    _hash: int = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        # jit hashes a Packed's (and a multi-tensor state's) layout on every call
        object.__setattr__(self, "_hash", hash(self._fields()))

    def _fields(self) -> tuple:
        return (self.treedef, self.names, self.shapes, self.dtypes, self.groups)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            isinstance(other, Layout)
            and self._hash == other._hash
            and self._fields() == other._fields()
        )

    @classmethod
    def of(cls, tree: PyTree, groups: Sequence[Sequence[int]]) -> Layout:
        flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
        layout = cls(
            treedef,
            tuple(path_name(p) for p, _ in flat),
            tuple(tuple(int(d) for d in jnp.shape(x)) for _, x in flat),
            tuple(str(jnp.result_type(x)) for _, x in flat),
            tuple(tuple(int(j) for j in g) for g in groups),
        )
        # one object per layout: jit compares a state's or a Packed's layout on every
        # call, and identical objects compare at once
        return _LAYOUTS.setdefault(layout._fields(), layout)

    @property
    def structs(self) -> list[jax.ShapeDtypeStruct]:
        """The unpacked leaves' shapes and dtypes."""
        return [jax.ShapeDtypeStruct(s, d) for s, d in zip(self.shapes, self.dtypes)]

    def sizes(self, group: int) -> list[int]:
        """The sizes of the leaves of buffer ``group``, in order."""
        return numels(self.shapes[j] for j in self.groups[group])

    def pack(self, tree: PyTree, what: str = "tree", cast: bool = False) -> Packed:
        """``tree`` (this layout's structure, shapes and dtypes) laid out in buffers.
        ``cast``: a float leaf of another dtype is cast to the layout's (gradients)."""
        flat, treedef = jax.tree_util.tree_flatten(tree)
        if treedef != self.treedef:
            raise ValueError(
                f"{what} does not have the packed parameters' tree structure:\n "
                f"{what}: {treedef}\n packed: {self.treedef}"
            )
        for j, (name, x, shape, dtype) in enumerate(
            zip(self.names, flat, self.shapes, self.dtypes)
        ):
            if cast and str(jnp.result_type(x)) != dtype and jnp.issubdtype(
                jnp.result_type(x), jnp.floating
            ):
                x = flat[j] = jnp.asarray(x).astype(dtype)
            if tuple(jnp.shape(x)) != shape or str(jnp.result_type(x)) != dtype:
                raise ValueError(
                    f"{what}: leaf {name!r} is {jnp.result_type(x)}{list(jnp.shape(x))}, "
                    f"the packed parameter is {dtype}{list(shape)}"
                )
        return Packed(tuple(_concat([flat[j] for j in m]) for m in self.groups), self)

    def unpack(self, buffers: Sequence[jax.Array]) -> PyTree:
        leaves: list[Any] = [  # empty leaves: in no buffer
            jnp.zeros(s, d) if 0 in s else None for s, d in zip(self.shapes, self.dtypes)
        ]
        for k, members in enumerate(self.groups):
            sizes = self.sizes(k)
            parts = _split(buffers[k], tuple(sizes)) if len(sizes) > 1 else [buffers[k]]
            for j, part in zip(members, parts):
                leaves[j] = part.reshape(self.shapes[j])
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def accept(self, grads: Any) -> Packed:
        """``grads`` as a :class:`Packed` of this layout (packing a plain tree)."""
        if isinstance(grads, Packed):
            if grads.layout != self:
                raise ValueError(
                    "grads are packed in another layout than the params (pack both "
                    "with the same optimizer's pack(), or differentiate through "
                    "params.unpack())"
                )
            return grads
        return self.pack(grads, "grads", cast=True)


def numels(shapes: Iterable[tuple[int, ...]]) -> list[int]:
    """The element count of each shape."""
    return [int(np.prod(s, dtype=np.int64)) for s in shapes]


def _concat(xs: list) -> jax.Array:
    """The leaves back to back. Concrete arrays are joined by NumPy: an eager
    ``jnp.concatenate`` of 2,000 operands compiles for seconds (20,000: minutes)."""
    if len(xs) == 1:
        return jnp.reshape(xs[0], -1)
    if any(isinstance(x, jax.core.Tracer) for x in xs):
        return jnp.concatenate([jnp.reshape(x, -1) for x in xs])
    return jnp.asarray(np.concatenate([np.asarray(x).reshape(-1) for x in xs]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _split(buffer: jax.Array, sizes: tuple[int, ...]) -> list[jax.Array]:
    """``lax.split(buffer, sizes)``; on the CPU one custom call that copies the pieces
    out (XLA compiles one kernel per slice: ~15 ms each, 30 s for 2,000 leaves)."""
    if not _kernels.available():
        return lax.split(buffer, sizes)
    call = jax.ffi.ffi_call(
        _kernels.UNPACK,
        [jax.ShapeDtypeStruct((n,), buffer.dtype) for n in sizes],
        vmap_method="sequential",
    )
    return list(call(buffer))


@_split.defjvp
def _split_jvp(sizes: tuple[int, ...], primals: tuple, tangents: tuple) -> tuple:
    # linear: reverse mode transposes lax.split into one concatenation
    return _split(primals[0], sizes), lax.split(tangents[0], sizes)


@jax.tree_util.register_pytree_node_class
class Packed:
    """Parameters (or gradients) laid out in flat buffers: see the module docstring.

    Attributes:
      buffers: one flat array per group of leaves.
      layout: the static :class:`Layout` that maps them back to the tree.
    """

    def __init__(self, buffers: Sequence[Any], layout: Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def tree_flatten(self) -> tuple[tuple[Any, ...], Layout]:
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, buffers: Sequence[Any]) -> Packed:
        return cls(buffers, layout)

    def unpack(self) -> PyTree:
        """The tree of leaves (slices of the buffers; differentiable)."""
        return self.layout.unpack(self.buffers)

    def __repr__(self) -> str:
        bufs = ", ".join(
            f"{jnp.result_type(b)}[{jnp.size(b)}]" if hasattr(b, "dtype") else repr(b)
            for b in self.buffers
        )
        return f"Packed({len(self.layout.names)} leaves in ({bufs}))"
