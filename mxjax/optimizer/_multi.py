r"""The multi-tensor state layout (``multi_tensor=True``): leaves share flat buffers.

With ``multi_tensor=True`` (a common argument of every optimizer; the default ``"auto"``
chooses this layout where :mod:`mxjax.optimizer._choose` says), the leaves that share
a dtype, compute dtype, master-copy flag, ``lr_mult`` and ``wd_mult`` form a *group*,
whatever their sizes. A group's state is one flat buffer per slot, shape ``(1, n)`` (``n``
the group's element count; ``(1, 1, n)`` ... if a parameter has that shape, so no slot
ever shares a parameter's shape), and one step of the group is one program over all its
leaves:

* on XLA's CPU backend, one custom call per :data:`~mxjax.optimizer._fused.CHUNK_LEAVES`
  leaves (:mod:`mxjax.optimizer._fused`): the rule's elementwise program runs over every
  leaf in place, on XLA's thread pool, with no kernel per leaf and no temporary;
* elsewhere (or for a rule the custom call cannot run), the rule's kernel runs once on the
  concatenated weights and gradients and each new weight is a slice of the result::

    G = concat(g_1, ..., g_k)            W = concat(w_1, ..., w_k)  (or the master copy)
    W', S' = kernel(W, G, S, h)           w_i' = W'[o_i : o_i + size_i]

The state is a :class:`MultiSlots` in ``state.slots``; :class:`~mxjax.optimizer.OptState`
is otherwise unchanged, and the same state runs on either path.

Why: XLA runs one kernel per output array and JAX passes every array across the jit
boundary separately; per-leaf state triples the arrays of an Adam step. Flat slots leave
the parameters and gradients as the only per-leaf arrays, and because no slot has a
parameter's shape, ``jax.jit(opt.update, donate_argnums=(1, 2))`` pairs every donated
buffer with its own successor: the step runs in place with no copies.

Rules not declared ``elementwise=False`` use this layout, and so do rules with
``Rule.per_leaf_scalars`` (LAMB, LANS, Nadam). Which path a group takes is proven at
trace time (:mod:`mxjax.optimizer._verify`): the custom call and the concatenation only
for a rule that is the same program on every leaf (per-leaf scalars: the custom call
only); anything else runs leaf by leaf on slices of the flat state. Any other optimizer
ignores the flag.
Every element goes through the same float32 operations as on the per-leaf path (tested
for every eligible optimizer, and by the MXNet parity replay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._contract import Rule
from ._fused import run_group, run_packed
from ._layout import _expected_slots, _init_leaf, _slot_names, needs_values
from ._leaves import LeafSteps
from ._packed import Layout, numels
from ._preamble import _Config, _Leaf, apply_rule
from ._rounding import no_contraction
from ._verify import Paths

_MAX_GROUP = 2**31 - 1  # elements in one flat buffer


@jax.tree_util.register_pytree_node_class
class Ungrouped:
    """``state.slots.leaves`` under ``multi_tensor=True``.

    Attributes:
      slots: the slot tuples of the leaves in no group (empty leaves), in tree order.
      layout: (static) the :class:`~mxjax.optimizer._packed.Layout` of the parameters
        the state was made for: updates check it, once per trace. (A tree of ``()``
        per grouped leaf would cost JAX a sort of every name on every call.)
      names: (static) the slot names (``Rule.slots``, then ``"weight_master_copy"``
        under ``multi_precision``), for :meth:`MultiSlots.by_param`.
    """

    def __init__(self, slots: Sequence, layout: Layout, names: tuple[str, ...] = ()):
        self.slots = tuple(slots)
        self.layout = layout
        self.names = tuple(names)

    def tree_flatten(self) -> tuple[tuple, tuple[Layout, tuple[str, ...]]]:
        return (self.slots,), (self.layout, self.names)

    @classmethod
    def tree_unflatten(
        cls, aux: tuple[Layout, tuple[str, ...]], children: Sequence
    ) -> Ungrouped:
        return cls(children[0], *aux)

    def __repr__(self) -> str:
        return f"Ungrouped({self.slots!r}, {len(self.layout.names)} leaves)"


class MultiSlots(NamedTuple):
    """``state.slots`` under ``multi_tensor=True``.

    Attributes:
      leaves: the ungrouped leaves' slots and the parameters' layout (:class:`Ungrouped`).
      groups: per group, its flat slot buffers (master copy last), members in tree order.
    """

    leaves: Ungrouped
    groups: tuple[tuple[jax.Array, ...], ...]

    def by_param(self) -> dict[str, dict[str, jax.Array]]:
        """``{parameter name: {slot name: array}}``, each slot in its parameter's shape
        (slices of the flat buffers): ``Optimizer.slots``."""
        lay, names = self.leaves.layout, self.leaves.names
        per_leaf: dict[int, tuple] = {}
        for members, flat in zip(lay.groups, self.groups, strict=True):
            starts = np.cumsum([0, *numels(lay.shapes[j] for j in members)])
            for j, a, b in zip(members, starts[:-1], starts[1:], strict=True):
                per_leaf[j] = tuple(
                    lax.slice(x.reshape(-1), (int(a),), (int(b),)).reshape(lay.shapes[j])
                    for x in flat
                )
        rest = iter(self.leaves.slots)
        out: dict[str, dict[str, jax.Array]] = {}
        for j, name in enumerate(lay.names):
            slots = per_leaf[j] if j in per_leaf else next(rest)
            if slots:
                out[name] = dict(zip(names, slots))
        return out

    def filled(self, take: Callable[[str, str, Any], jax.Array]) -> MultiSlots:
        """This state's structure holding ``take(parameter, slot, like)`` for every
        slot (``like`` has the slot's shape and dtype): the inverse of
        :meth:`by_param`."""
        lay, names = self.leaves.layout, self.leaves.names
        like = jax.eval_shape(lambda s: s.by_param(), self)
        get = lambda j: [  # noqa: E731
            take(lay.names[j], k, v) for k, v in like[lay.names[j]].items()
        ] if lay.names[j] in like else []
        grouped = {j for members in lay.groups for j in members}
        ungrouped = [tuple(get(j)) for j in range(len(lay.names)) if j not in grouped]
        groups = []
        for members, flat in zip(lay.groups, self.groups, strict=True):
            per_leaf = [get(j) for j in members]
            groups.append(
                tuple(
                    _concat([s[k] for s in per_leaf], x.shape)
                    for k, x in enumerate(flat)
                )
            )
        return MultiSlots(Ungrouped(ungrouped, lay, names), tuple(groups))


def _no_leaves() -> jax.Array:
    """The multi-tensor ``state.slots`` of a tree without leaves (see ``init``)."""
    return jnp.zeros((0,), jnp.float32)


class _Group(NamedTuple):
    info: _Leaf  # the members' shared facts
    members: tuple[int, ...]  # leaf indices in tree order
    shape: tuple[int, ...]  # the flat buffers' shape, (1, ..., n)


def _size(x: Any) -> int:
    return int(np.prod(jnp.shape(x), dtype=np.int64))


def plan(infos: list[_Leaf], leaves: list) -> list[_Group]:
    """The groups of a tree (static: depends on shapes, dtypes and multipliers only)."""
    sizes = [_size(w) for w in leaves]
    buckets: dict[tuple, list[list[int]]] = {}
    totals: dict[tuple, int] = {}
    for j, (info, n) in enumerate(zip(infos, sizes)):
        if n == 0:
            continue
        key = (info.dtype, info.compute, info.master, info.lr_mult, info.wd_mult)
        runs = buckets.setdefault(key, [[]])
        if totals.get(key, 0) + n > _MAX_GROUP:
            runs.append([])
            totals[key] = 0
        runs[-1].append(j)
        totals[key] = totals.get(key, 0) + n
    taken = {tuple(jnp.shape(w)) for w in leaves}
    groups = []
    for runs in buckets.values():
        for members in runs:
            total = sum(sizes[i] for i in members)
            shape: tuple[int, ...] = (1, total)
            while shape in taken:  # a parameter must never share a slot's shape
                shape = (1, *shape)
            first, last = infos[members[0]], infos[members[-1]]
            info = first._replace(name=f"<group {first.name}..{last.name}>")
            groups.append(_Group(info, tuple(members), shape))
    return groups


def _layout(groups: list[_Group], leaves: list, treedef: Any) -> Layout:
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    return Layout.of(tree, [gr.members for gr in groups])


def _check_same_tree(have: Layout, want: Layout) -> None:
    """Names the first difference between the state's parameters and these."""
    if have == want:
        return
    for name, a, b in (
        ("names", have.names, want.names),
        ("shapes", have.shapes, want.shapes),
        ("dtypes", have.dtypes, want.dtypes),
    ):
        if a != b:
            diff = (i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            k = next(diff, min(len(a), len(b)))
            raise ValueError(
                f"state.slots was made by init() on other parameters: their {name} "
                f"differ at leaf {k} ({len(a)} leaves: "
                f"{a[k] if k < len(a) else 'none'!r}; these {len(b)}: "
                f"{b[k] if k < len(b) else 'none'!r})"
            )
    raise ValueError(
        "state.slots was made by init() on another parameter tree or for another "
        "grouping (lr_mult, wd_mult, multi_precision)"
    )


def _concat(xs: list, shape: tuple[int, ...]) -> jax.Array:
    return jnp.concatenate([jnp.reshape(x, -1) for x in xs]).reshape(shape)


class MultiTensor:
    """The multi-tensor layout (see the module docstring)."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg
        self.names = _slot_names(rule, cfg)
        self.paths = Paths(rule, cfg)
        self.apply_leaves = LeafSteps(rule, cfg)

    def init(
        self, infos: list[_Leaf], leaves: list, treedef: Any, values: Sequence | None = None
    ) -> MultiSlots | jax.Array:
        """``values``: the groups' weights already flat (a :class:`Packed`'s buffers).

        A tree without leaves gets one empty array: a leaf where every
        other tree's state has a :class:`MultiSlots`, so that optax's
        ``tree_map_params`` (which calls ``init`` on a tree without leaves) sees the
        flat buffers as state that is not parameter-shaped."""
        if not leaves:
            return _no_leaves()
        groups = plan(infos, leaves)
        grouped = {j for gr in groups for j in gr.members}
        ungrouped = Ungrouped(
            [
                _init_leaf(self.rule, info, w)
                for j, (info, w) in enumerate(zip(infos, leaves))
                if j not in grouped
            ],
            _layout(groups, leaves, treedef),
            self.names,
        )
        flat = []
        for k, gr in enumerate(groups):
            if needs_values(self.rule, gr.info):
                w = (
                    _concat([leaves[j] for j in gr.members], gr.shape)
                    if values is None
                    else jnp.reshape(values[k], gr.shape)
                )
            else:  # zeros: no concatenation (XLA takes seconds to compile 2,000 operands)
                w = jax.ShapeDtypeStruct(gr.shape, gr.info.dtype)
            flat.append(_init_leaf(self.rule, gr.info, w))
        return MultiSlots(ungrouped, tuple(flat))

    def _expected(self, infos: list[_Leaf], leaves: list, treedef: Any) -> MultiSlots:
        """What :meth:`init` makes, as shapes (without tracing it: fast for many leaves)."""
        spec = lambda info, shape, dtype: tuple(  # noqa: E731
            jax.ShapeDtypeStruct(s, d)
            for s, d in _expected_slots(self.rule, info, shape, jnp.dtype(dtype))
        )
        groups = plan(infos, leaves)
        grouped = {j for gr in groups for j in gr.members}
        ungrouped = Ungrouped(
            [
                spec(info, tuple(jnp.shape(w)), jnp.result_type(w))
                for j, (info, w) in enumerate(zip(infos, leaves))
                if j not in grouped
            ],
            _layout(groups, leaves, treedef),
            self.names,
        )
        flat = tuple(spec(gr.info, gr.shape, gr.info.dtype) for gr in groups)
        return MultiSlots(ungrouped, flat)

    def check(self, infos: list[_Leaf], leaves: list, treedef: Any, slots: Any) -> None:
        if not leaves:
            if jnp.shape(slots) != (0,):
                raise ValueError(
                    f"state.slots does not fit these parameters (no leaves): {slots!r}"
                )
            return
        want = self._expected(infos, leaves, treedef)
        aval = lambda x: (tuple(jnp.shape(x)), str(jnp.result_type(x)))  # noqa: E731
        ok = isinstance(slots, MultiSlots) and isinstance(slots.leaves, Ungrouped)
        if ok:
            _check_same_tree(slots.leaves.layout, want.leaves.layout)
            try:
                ok = jax.tree.structure(slots) == jax.tree.structure(want) and all(
                    aval(a) == aval(b)
                    for a, b in zip(jax.tree.leaves(slots), jax.tree.leaves(want))
                )
            except TypeError:
                ok = False
        if not ok:
            raise ValueError(
                "state.slots does not fit this optimizer's multi-tensor layout: expected "
                f"{jax.tree.map(aval, want)}, got "
                f"{jax.tree.map(aval, slots) if isinstance(slots, tuple) else slots!r} "
                "(a state from init() with multi_tensor=False, from another optimizer or "
                "from another parameter tree?)"
            )

    def _xla_group(
        self,
        gr: _Group,
        infos: list[_Leaf],
        n: int,
        ws: list,
        gs: list,
        flat: tuple,
        kw: dict,
        concat: bool,
        shapes: list[tuple[int, ...]] | None = None,
    ) -> tuple[list, tuple]:
        """One group through XLA: on the concatenation (``concat``: a rule proven
        elementwise), else leaf by leaf on slices of the flat state. Returns new weights
        and slots. ``shapes``: the leaves' shapes when ``ws`` and ``gs`` are one packed
        buffer each (returns one new buffer)."""
        if shapes is not None:
            if concat:
                w = None if gr.info.master else jnp.reshape(ws[0], gr.shape)
                w_new, s_new = apply_rule(
                    self.rule, self.cfg, gr.info, w, jnp.reshape(gs[0], gr.shape), flat,
                    index=-1, num_leaves=n, **kw,
                )
                return [jnp.reshape(w_new, -1)], tuple(s_new)
            sizes = numels(shapes)
            split = lambda x: [  # noqa: E731
                p.reshape(sh) for p, sh in zip(lax.split(x, sizes), shapes)
            ]
            new_w, s_new = self._xla_group(
                gr, infos, n, split(ws[0]), split(gs[0]), flat, kw, concat
            )
            return [jnp.concatenate([jnp.reshape(w, -1) for w in new_w])], s_new
        sizes = [_size(w) for w in ws]
        if not concat:
            new_w, pieces, start = [], [[] for _ in flat], 0
            for j, w, g, size in zip(gr.members, ws, gs, sizes):
                info = infos[j]
                s = tuple(
                    lax.slice(x.reshape(-1), (start,), (start + size,)).reshape(w.shape)
                    for x in flat
                )
                w_new, s_new = apply_rule(
                    self.rule,
                    self.cfg,
                    info,
                    None if info.master else w,
                    g,
                    s,
                    index=j,
                    num_leaves=n,
                    **kw,
                )
                new_w.append(w_new)
                for acc, x in zip(pieces, s_new):
                    acc.append(x.reshape(-1))
                start += size
            return new_w, tuple(
                jnp.concatenate(acc).reshape(x.shape) for acc, x in zip(pieces, flat)
            )
        w = None if gr.info.master else _concat(ws, gr.shape)
        w_new, s_new = apply_rule(
            self.rule,
            self.cfg,
            gr.info,
            w,
            _concat(gs, gr.shape),
            flat,
            index=-1,
            num_leaves=n,
            **kw,
        )
        # Materialised once: each leaf's kernel is then a plain slice of it (else XLA
        # fuses the group's update into every slice, and compiles far longer).
        out = lax.optimization_barrier(w_new).reshape(-1)
        starts = np.cumsum([0, *sizes])
        new_w = [
            lax.slice(out, (int(a),), (int(b),)).reshape(jnp.shape(w))
            for a, b, w in zip(starts[:-1], starts[1:], ws)
        ]
        return new_w, tuple(s_new)

    def _group(
        self,
        gr: _Group,
        infos: list[_Leaf],
        n: int,
        ws: list,
        gs: list,
        flat: tuple,
        kw: dict,
        shapes: list[tuple[int, ...]] | None = None,
    ) -> tuple[list, tuple]:
        """One group: the custom call where it can run it (its JVP is the XLA path's, so
        a step stays differentiable), else XLA; the paths a rule may take are proven
        (:mod:`mxjax.optimizer._verify`). With ``shapes``, ``ws`` and ``gs`` are one
        packed buffer each, holding leaves of those shapes."""
        leaf_shapes = shapes or [tuple(jnp.shape(w)) for w in ws]
        choice = self.paths.choose(gr.info, flat, leaf_shapes, kw, n)
        def xla(ws: list, gs: list, flat: tuple, kw: dict) -> tuple[list, tuple]:
            run = lambda ws, gs, flat, kw: self._xla_group(  # noqa: E731
                gr, infos, n, ws, gs, flat, kw, choice.xla == "concat", shapes
            )
            # XLA's arithmetic rounds each product as MXNet does (the custom call does)
            return no_contraction(run, kw["t"])(ws, gs, flat, kw)

        @jax.custom_jvp
        def fused(ws, gs, flat, kw):
            program = self.paths.program(choice, gr.info, gr.members, len(flat), kw)
            if program is None:
                return xla(ws, gs, flat, kw)
            if shapes is None:
                return run_group(program, ws, gs, flat)
            sizes = numels(shapes)
            w_new, s_new = run_packed(program, ws[0], gs[0], flat, sizes)
            return [w_new], s_new

        fused.defjvp(lambda primals, tangents: jax.jvp(xla, primals, tangents))
        return fused(ws, gs, tuple(flat), kw)

    def step(
        self,
        infos: list[_Leaf],
        p_leaves: list,
        g_leaves: list,
        treedef: Any,
        slots: MultiSlots,
        **kw: Any,
    ) -> tuple[list, MultiSlots]:
        n = len(p_leaves)
        if not n:
            return [], slots
        groups = plan(infos, p_leaves)
        new_params: list = [None] * n
        new_groups = []
        for k, gr in enumerate(groups):
            ws, s_new = self._group(
                gr,
                infos,
                n,
                [p_leaves[j] for j in gr.members],
                [g_leaves[j] for j in gr.members],
                slots.groups[k],
                kw,
            )
            for j, w_new in zip(gr.members, ws):
                new_params[j] = w_new
            new_groups.append(tuple(s_new))
        ungrouped = [j for j in range(n) if new_params[j] is None]
        ws, new_ungrouped = self.apply_leaves(
            [(j, infos[j]) for j in ungrouped], n,
            [p_leaves[j] for j in ungrouped], [g_leaves[j] for j in ungrouped],
            list(slots.leaves.slots), kw,
        )
        for j, w_new in zip(ungrouped, ws):
            new_params[j] = w_new
        leaves = Ungrouped(new_ungrouped, slots.leaves.layout, self.names)
        return new_params, slots._replace(leaves=leaves, groups=tuple(new_groups))

    def fits(self, infos: list[_Leaf], layout: Layout) -> bool:
        """Whether ``layout``'s buffers are this optimizer's groups."""
        groups = plan(infos, layout.structs)
        return layout.groups == tuple(gr.members for gr in groups)

    def step_packed(
        self,
        infos: list[_Leaf],
        layout: Layout,
        buffers: Sequence,
        g_buffers: Sequence,
        slots: MultiSlots,
        **kw: Any,
    ) -> tuple[list, MultiSlots]:
        """:meth:`step` on packed weights and gradients (a layout that :meth:`fits`):
        one program per group over its whole buffer. Returns the new buffers. Empty
        leaves (in no buffer) keep their (empty) slots."""
        n = len(infos)
        groups = plan(infos, layout.structs)
        new_buffers, new_groups = [], []
        for k, gr in enumerate(groups):
            shapes = [layout.shapes[j] for j in gr.members]
            ws, s_new = self._group(
                gr, infos, n, [buffers[k]], [g_buffers[k]], slots.groups[k], kw, shapes
            )
            new_buffers.append(ws[0])
            new_groups.append(tuple(s_new))
        return new_buffers, slots._replace(groups=tuple(new_groups))
