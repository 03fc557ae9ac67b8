"""The parameters as :func:`~mxjax.optimizer.from_rule`'s ``init`` and ``update`` see them.

``init`` and ``update`` take a plain tree or :class:`~mxjax.optimizer._packed.Packed`
parameters (``opt.pack``, :func:`pack`). :func:`param_view` gives either as a
:class:`ParamView`: the leaves' names, shapes and facts for the trace-time checks and the
preamble, the values the state layout steps, and how the parameters are rebuilt from the
new values. It is the only place that tells the two apart:

* a tree: its leaves, stepped by the layout's ``step``;
* packed parameters whose buffers are the layout's groups (``StateLayout.fits``): the
  buffers, each stepped whole by the layout's ``step_packed``;
* packed parameters that do not fit (per-leaf slots, another optimizer's grouping): the
  unpacked tree, stepped leaf by leaf and packed again (correct, not faster).
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from .._typing import Grads, Params
from ._contract import Rule
from ._layout import StateLayout
from ._multi import plan
from ._packed import Layout, Packed
from ._preamble import (
    _as_compute,
    _check_state,
    _check_update_trees,
    _Config,
    _flatten_named,
    _Leaf,
    _leaf_info,
)

_NO_GRADS: Any = object()  # param_view for init: no gradients
# the stacklevel of _leaf_info's warning, called from param_view: init's or update's caller
_CALLER = 5


class ParamView(Protocol):
    """What ``init`` and ``update`` ask of the parameters (from :func:`param_view`).

    Attributes:
      names: each leaf's name, in tree order.
      treedef: the tree's structure.
      leaves: each leaf, or its shape and dtype (a ``jax.ShapeDtypeStruct``).
      infos: each leaf's static facts.
      params: the parameters the step updates (kept by a ``skip_nonfinite`` skip).
      values: the arrays the layout steps (the leaves, or the packed buffers).
    """

    names: list[str]
    treedef: Any
    leaves: list
    infos: list[_Leaf]
    params: Params
    values: Any

    def init_slots(self) -> Any:
        """``state.slots`` for these parameters."""

    def grads(self, state: Any) -> list:
        """The gradients, one per value, checked (at trace time) against the parameters;
        ``state`` checked to be an ``OptState``."""

    def step(self, values: Any, g_values: list, slots: Any, kw: dict) -> tuple[list, Any]:
        """The layout's step: new values and slots."""

    def rebuild(self, values: list) -> Params:
        """The parameters holding new ``values``."""

    def finish(self, params: Params) -> Params:
        """What ``update`` returns for rebuilt ``params``."""


class _TreeView:
    """A tree of leaves (``repack``: the layout of the packed parameters it was unpacked
    from, packed again by :meth:`finish`)."""

    def __init__(
        self, layout: StateLayout, params: Params, names: list[str], leaves: list,
        treedef: Any, infos: list[_Leaf], grads: Grads, repack: Layout | None,
    ):
        self.layout, self.params, self.names, self.leaves = layout, params, names, leaves
        self.treedef, self.infos, self._grads, self.repack = treedef, infos, grads, repack
        self.values = leaves

    def init_slots(self) -> Any:
        return self.layout.init(self.infos, self.leaves, self.treedef)

    def grads(self, state: Any) -> list:
        g = _check_update_trees(self.names, self.treedef, self.leaves, self._grads, state)
        return _as_compute(self.infos, g)

    def step(self, values: list, g_values: list, slots: Any, kw: dict) -> tuple[list, Any]:
        return self.layout.step(self.infos, values, g_values, self.treedef, slots, **kw)

    def rebuild(self, values: list) -> Params:
        return jax.tree_util.tree_unflatten(self.treedef, values)

    def finish(self, params: Params) -> Params:
        return params if self.repack is None else self.repack.pack(params, "params")


class _PackedView:
    """Packed parameters whose buffers the layout steps whole."""

    def __init__(
        self, layout: StateLayout, params: Packed, leaves: list, infos: list[_Leaf],
        grads: Packed,
    ):
        self.layout, self.params, self.leaves, self.infos = layout, params, leaves, infos
        self.names, self.treedef = list(params.layout.names), params.layout.treedef
        self.values, self._grads = params.buffers, grads

    def init_slots(self) -> Any:
        return self.layout.init(self.infos, self.leaves, self.treedef, self.values)

    def grads(self, state: Any) -> list:
        _check_state(state)
        return list(self._grads.buffers)

    def step(self, values: Any, g_values: list, slots: Any, kw: dict) -> tuple[list, Any]:
        lay = self.params.layout
        return self.layout.step_packed(self.infos, lay, values, g_values, slots, **kw)

    def rebuild(self, values: list) -> Packed:
        return Packed(values, self.params.layout)

    def finish(self, params: Params) -> Params:
        return params


def param_view(
    rule: Rule, cfg: _Config, layout: StateLayout, params: Params, grads: Grads = _NO_GRADS
) -> ParamView:
    """``params`` (and ``update``'s ``grads``; none for ``init``) as ``layout`` steps
    them: see the module docstring. Gradients of packed parameters may be a plain tree
    (packed here) or a ``Packed`` of the same layout."""
    repack = None
    if isinstance(params, Packed):
        lay = params.layout
        if grads is _NO_GRADS:  # empty leaves (in no buffer) get slots of their values
            leaves = [jnp.zeros(s.shape, s.dtype) if s.size == 0 else s for s in lay.structs]
        else:
            grads = lay.accept(grads)
            leaves = lay.structs
        infos = _leaf_info(rule, cfg, list(lay.names), leaves, _CALLER)
        if layout.fits(infos, lay):
            return _PackedView(layout, params, leaves, infos, grads)
        repack = lay  # leaf by leaf, packed again
        grads = grads if grads is _NO_GRADS else grads.unpack()
        params = params.unpack()
    names, leaves, treedef = _flatten_named(params, "params")
    infos = _leaf_info(rule, cfg, names, leaves, _CALLER)
    return _TreeView(layout, params, names, leaves, treedef, infos, grads, repack)


def pack(rule: Rule, cfg: _Config, params: Params) -> Packed:
    """``opt.pack``: ``params`` in one flat buffer per group of the multi-tensor layout
    (:func:`~mxjax.optimizer._multi.plan`)."""
    if isinstance(params, Packed):
        raise TypeError("params are packed already")
    names, leaves, treedef = _flatten_named(params, "params")
    infos = _leaf_info(rule, cfg, names, leaves)
    groups = [gr.members for gr in plan(infos, leaves)]
    return Layout.of(params, groups).pack(params, "params")
