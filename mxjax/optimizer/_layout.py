"""State layouts: the per-leaf layout, the protocol every layout follows, and the
layout-independent view of slots (``{parameter: {slot: array}}``)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from .._names import path_name
from .._typing import Params, PyTree
from ._contract import MASTER, OptState, Rule
from ._packed import Layout
from ._leaves import LeafSteps
from ._preamble import _Config, _Leaf


@runtime_checkable
class LayoutSlots(Protocol):
    """The ``state.slots`` of a layout other than the per-leaf one (the multi-tensor
    layout's :class:`~mxjax.optimizer.MultiSlots`): it reads itself by parameter."""

    def by_param(self) -> dict[str, dict[str, jax.Array]]: ...


class StateLayout(Protocol):
    """What :func:`~mxjax.optimizer.from_rule` (through its parameters' view,
    :mod:`mxjax.optimizer._params`) asks of a state layout (per-leaf: :class:`_PerLeaf`;
    flat: :class:`~mxjax.optimizer._multi.MultiTensor`). :meth:`step_packed` and
    ``init``'s ``values`` are asked only where :meth:`fits` is true: a layout that never
    fits (the per-leaf one) has neither."""

    def init(self, infos: list, leaves: list, treedef: Any, values: Any = None) -> Any:
        """``state.slots`` for these leaves (``values``: packed parameters' buffers)."""

    def fits(self, infos: list, layout: Layout) -> bool:
        """Whether packed parameters of ``layout`` update in place (else unpacked)."""

    def step_packed(
        self, infos: list, layout: Layout, buffers: Any, g_buffers: list, slots: Any,
        **kw: Any,
    ) -> tuple[list, Any]:
        """:meth:`step` on the buffers of packed parameters whose ``layout`` fits: the
        new buffers and slots."""

    def check(self, infos: list, leaves: list, treedef: Any, slots: Any) -> None:
        """Trace-time check that ``slots`` belong to these leaves; raises naming one."""

    def step(
        self, infos: list, p_leaves: list, g_leaves: list, treedef: Any, slots: Any,
        **kw: Any,
    ) -> tuple[list, Any]:
        """New leaves and slots: every leaf through :func:`apply_rule`'s update."""


def _slot_dtype(rule: Rule, info: _Leaf) -> jnp.dtype:
    if rule.state_dtype == "float32":  # at least float32 (float64 stays float64)
        return jnp.promote_types(jnp.float32, info.compute)
    return info.compute

def _init_leaf(
    rule: Rule, info: _Leaf, w: jax.Array | jax.ShapeDtypeStruct
) -> tuple[jax.Array, ...]:
    """A leaf's initial slots. ``w`` may be a ``ShapeDtypeStruct`` when the slots do not
    depend on the weight's values (zeros, no master copy): see :func:`needs_values`.
    Zeros are ``zeros_like(w)``, so they keep an array's sharding (as optax's do)."""
    dtype = _slot_dtype(rule, info)
    if isinstance(w, jax.ShapeDtypeStruct):
        zeros = lambda: jnp.zeros(w.shape, dtype)  # noqa: E731
    else:
        zeros = lambda: jnp.zeros_like(w, dtype=dtype)  # noqa: E731
    if not needs_values(rule, info):
        return tuple(zeros() for _ in rule.slots)
    w = jnp.asarray(w)
    wc = w.astype(info.compute)
    if rule.init_slots is not None:
        # Fresh buffers: a slot may start as the weight itself (DCASGD), and params and
        # state are donated together.
        slots = tuple(jnp.array(x, copy=True) for x in rule.init_slots(wc))
    else:
        slots = tuple(zeros() for _ in rule.slots)
    if info.master:
        slots = (*slots, wc)
    return slots

def needs_values(rule: Rule, info: _Leaf) -> bool:
    """Whether a leaf's initial slots depend on its values (a rule's ``init_slots``, a
    master copy) rather than only on its shape."""
    return rule.init_slots is not None or info.master

def _slot_names(rule: Rule, cfg: _Config) -> tuple[str, ...]:
    """The keys of a per-leaf ``state.slots`` (and of each parameter's slots view)."""
    return rule.slots + ((MASTER,) if cfg.multi_precision else ())

def _slots_per_leaf(treedef: Any, slots: PyTree, names: tuple[str, ...]) -> list:
    """Per leaf, the tuple of its slots (master copy last) from ``{name: tree}``."""
    if isinstance(slots, LayoutSlots):
        raise ValueError(
            "state.slots is a multi-tensor state (from init() of an optimizer created "
            "with multi_tensor=True); this optimizer does not fit it: it keeps per-leaf "
            "slots (multi_tensor=False, or a rule that is not elementwise)"
        )
    if not isinstance(slots, Mapping) or sorted(slots) != sorted(names):
        got = sorted(slots) if isinstance(slots, Mapping) else type(slots).__name__
        raise ValueError(
            f"state.slots does not match this optimizer: expected the slots "
            f"{sorted(names)}, got {got} (a state from another optimizer, or from an "
            "older mxjax? see opt.state_from_slots)"
        )
    try:
        per_slot = [treedef.flatten_up_to(slots[k]) for k in names]
    except (ValueError, TypeError) as e:
        raise ValueError(
            "state.slots does not match the params' tree: was the state made by "
            f"init() on other parameters? ({str(e)[:300]})"
        ) from None
    per_leaf = zip(*per_slot, strict=True) if per_slot else ((),) * treedef.num_leaves
    return [tuple(x for x in s if x is not None) for s in per_leaf]

def _slots_by_name(treedef: Any, per_leaf: list, names: tuple[str, ...]) -> dict:
    """``{slot name: params-shaped tree}`` from the per-leaf slot tuples (``None`` for
    a missing master copy)."""
    out = {}
    for k, name in enumerate(names):
        col = [s[k] if k < len(s) else None for s in per_leaf]
        out[name] = jax.tree_util.tree_unflatten(treedef, col)
    return out

@functools.lru_cache(maxsize=4096)
def _expected_slots(
    rule: Rule, info: _Leaf, shape: tuple[int, ...], dtype: jnp.dtype
) -> tuple[tuple[tuple[int, ...], str], ...]:
    """The (shape, dtype) of each slot ``init`` makes for a leaf (cached per trace)."""
    out = jax.eval_shape(
        lambda x: _init_leaf(rule, info, x), jax.ShapeDtypeStruct(shape, dtype)
    )
    return tuple((tuple(e.shape), str(e.dtype)) for e in out)

def _check_slots(rule: Rule, info: _Leaf, w: jax.Array, slots: Any) -> None:
    # The slots do not depend on the name or the multipliers: one entry per leaf kind.
    kind = info._replace(name="", lr_mult=1.0, wd_mult=1.0)
    want = _expected_slots(rule, kind, tuple(jnp.shape(w)), jnp.result_type(w))
    got = (
        tuple((tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in slots)
        if isinstance(slots, tuple)
        else None
    )
    if got != want:
        raise ValueError(
            f"state for parameter {info.name!r} does not fit this optimizer: expected "
            f"slots {list(want)}, got {None if got is None else list(got)} "
            "(a state from another optimizer or another parameter tree?)"
        )

def _check_extra(rule: Rule, extra: PyTree) -> None:
    spec = lambda t: jax.tree.map(  # noqa: E731
        lambda x: (jnp.shape(x), jnp.result_type(x)), t
    )
    want = None if rule.init_extra is None else jax.eval_shape(rule.init_extra)
    try:
        same = jax.tree.structure(want) == jax.tree.structure(extra) and spec(
            want
        ) == spec(extra)
    except TypeError:
        same = False
    if not same:
        raise ValueError(
            "state.extra does not fit this optimizer (a state from another optimizer?): "
            f"expected {spec(want)}, got {jax.tree.map(lambda x: getattr(x, 'shape', x), extra)}"
        )

class _PerLeaf:
    """The reference state layout: ``{slot name: params-shaped tree}``."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg
        self.names = _slot_names(rule, cfg)
        self.apply_leaves = LeafSteps(rule, cfg)

    def init(self, infos: list[_Leaf], leaves: list, treedef: Any) -> PyTree:
        slots = [_init_leaf(self.rule, i, w) for i, w in zip(infos, leaves)]
        return _slots_by_name(treedef, slots, self.names)

    def fits(self, infos: list[_Leaf], layout: Layout) -> bool:
        """Packed parameters never fit per-leaf slots: they are unpacked to update (so
        this layout has no ``step_packed``)."""
        return False

    def check(self, infos: list[_Leaf], leaves: list, treedef: Any, slots: PyTree) -> None:
        for info, w, s in zip(infos, leaves, _slots_per_leaf(treedef, slots, self.names)):
            _check_slots(self.rule, info, w, s)

    def step(
        self,
        infos: list[_Leaf],
        p_leaves: list,
        g_leaves: list,
        treedef: Any,
        slots: PyTree,
        **kw: Any,
    ) -> tuple[list, PyTree]:
        n = len(p_leaves)
        new_params, new_slots = self.apply_leaves(
            list(enumerate(infos)), n, p_leaves, g_leaves,
            _slots_per_leaf(treedef, slots, self.names), kw,
        )
        return new_params, _slots_by_name(treedef, new_slots, self.names)


def slots_view(slots: PyTree) -> dict[str, dict[str, jax.Array]]:
    """``{parameter name: {slot name: array}}`` of a ``state.slots`` of any layout
    (see ``Optimizer.slots``): a multi-tensor state's own view, else the per-leaf
    ``{slot name: params-shaped tree}`` regrouped by parameter."""
    view = getattr(slots, "by_param", None)
    if view is not None:
        return view()
    if _is_no_leaves(slots):
        return {}
    if not isinstance(slots, Mapping):
        raise TypeError(f"not the slots of an mxjax state: {type(slots).__name__}")
    out: dict[str, dict[str, jax.Array]] = {}
    paths: dict[str, str] = {}
    for slot, tree in slots.items():
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name, where = path_name(path), jax.tree_util.keystr(path)
            if paths.setdefault(name, where) != where:
                raise ValueError(
                    f"parameters {paths[name]} and {where} share the name {name!r}: "
                    "their slots cannot be told apart by name"
                )
            out.setdefault(name, {})[slot] = x
    return out

def _is_no_leaves(slots: PyTree) -> bool:
    """The multi-tensor ``state.slots`` of a tree without leaves: one empty array."""
    return not isinstance(slots, Mapping) and jnp.shape(slots) == (0,)

def take_slot(by_param: Mapping, name: str, slot: str, like: Any) -> jax.Array:
    """``by_param[name][slot]`` as an array of ``like``'s shape and dtype, else a
    ``ValueError`` naming the parameter and the slot."""
    try:
        x = by_param[name][slot]
    except (KeyError, TypeError):
        raise ValueError(f"no slot {slot!r} given for parameter {name!r}") from None
    x = jnp.asarray(x)
    if (x.shape, x.dtype) != (tuple(like.shape), jnp.dtype(like.dtype)):
        raise ValueError(
            f"slot {slot!r} of parameter {name!r} is {x.dtype}{list(x.shape)}; this "
            f"state keeps it as {jnp.dtype(like.dtype)}{list(like.shape)}"
        )
    return x

def fill_slots(template: PyTree, by_param: Mapping) -> PyTree:
    """The inverse of :func:`slots_view`: ``template`` (a ``state.slots``, arrays or
    ``jax.ShapeDtypeStruct``) with every slot taken from ``by_param``, each checked
    against the template's shape and dtype. Refuses a parameter or slot the template
    lacks."""
    if not isinstance(by_param, Mapping) or not all(
        isinstance(d, Mapping) for d in by_param.values()
    ):
        raise TypeError(
            "slots must be {parameter name: {slot name: array}}, got "
            f"{type(by_param).__name__}"
        )
    want = jax.eval_shape(slots_view, template)
    extra = sorted(
        f"{n}/{k}" for n, d in by_param.items() for k in d if k not in want.get(n, {})
    )
    if extra:
        have = {n: sorted(d) for n, d in want.items()}
        raise ValueError(f"slots given that this state does not have: {extra}; it has {have}")
    take = lambda name, slot, like: take_slot(by_param, name, slot, like)  # noqa: E731
    filled = getattr(template, "filled", None)
    if filled is not None:
        return filled(take)
    if _is_no_leaves(template):
        return jnp.zeros((0,), template.dtype)
    return {
        slot: jax.tree_util.tree_map_with_path(
            lambda path, like, slot=slot: take(path_name(path), slot, like), tree
        )
        for slot, tree in template.items()
    }


def from_slots(
    init: Callable[[Params], OptState],
    begin_num_update: int,
    init_extra: Callable[[], PyTree],
    check_extra: Callable[[PyTree], None] = lambda extra: None,
) -> Callable[..., OptState]:
    """``Optimizer.state_from_slots`` of an optimizer whose ``init`` is ``init``: its
    state's layout for ``params`` (as shapes), filled from ``slots``; ``count`` and
    ``extra`` default to ``begin_num_update`` and ``init_extra()``."""

    def state_from_slots(
        slots: Mapping[str, Mapping[str, Any]],
        params: Params,
        *,
        count: Any = None,
        extra: PyTree = None,
        skipped: Any = 0,
    ) -> OptState:
        if not isinstance(slots, Mapping):
            raise TypeError(
                f"slots must be {{parameter name: {{slot name: array}}}}, got "
                f"{type(slots).__name__}"
            )
        with warnings.catch_warnings():  # init's warning is for init's callers
            warnings.simplefilter("ignore")
            template = jax.eval_shape(init, params)
        state = OptState(
            count=jnp.asarray(begin_num_update if count is None else count, jnp.int32),
            slots=fill_slots(template.slots, slots),
            extra=init_extra() if extra is None else extra,
            skipped=jnp.asarray(skipped, jnp.int32),
        )
        check_extra(state.extra)
        return state

    return state_from_slots
