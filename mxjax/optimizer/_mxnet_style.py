r"""The pure ``(init, update)`` pair of an MXNet-style ``Optimizer`` subclass.

``init(params)`` calls ``create_state_multi_precision(index, weight)`` for each leaf in
tree order; ``update(grads, state, params)`` calls ``update_multi_precision(index,
weight, grad, state)`` for each leaf, which returns ``(new_weight, new_state)``. While a
call runs, the instance's ``num_update``/``_index_update_count`` hold the state's
update count (traced under ``jit``) and the attributes named in ``global_states`` hold
``state.extra``; afterwards the instance's attributes are restored, so the pair stays
pure.

``state.slots`` follows mxjax's convention, ``{slot name: params-shaped tree}``
(``None`` where a leaf has no such slot), so ``opt.slots(state)``, ``opt.state_from_slots``,
checkpoints and optax's ``tree_map_params`` work as for the built-ins. A slot is named
by its position in the per-leaf state ``create_state_multi_precision`` returns:
``"state"`` for a single array, ``"state[1][0]"`` for the first array of the second
element of a tuple (under ``multi_precision`` a float16 leaf's ``(master, state)``
gives ``"state[0]"`` for the master copy).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._typing import Grads, Params, PyTree
from ._contract import OptState
from ._layout import from_slots, slots_view
from ._preamble import _flatten_named

_STEP_ATTRS = ("num_update", "_index_update_count", "_all_index_update_counts", "idx2name")


def _global_names(opt: Any) -> tuple[str, ...]:
    names = getattr(type(opt), "global_states", ())
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"global_states must be a tuple of attribute names, got {names!r}")
    return tuple(names)


@contextlib.contextmanager
def _stepping(
    opt: Any, count: Any, extra: dict[str, Any] | None, names: list[str]
) -> Iterator[None]:
    """Inside: MXNet's counters at ``count`` for the leaves ``names``, ``idx2name`` (the
    leaves' names unless ``param_idx2name`` was given) and the global states from
    ``extra``; the attributes are restored on exit."""
    keep = [*_STEP_ATTRS, *_global_names(opt)]
    saved = {k: opt.__dict__[k] for k in keep if k in opt.__dict__}
    try:
        counts = dict.fromkeys(range(len(names)), count)
        opt.__dict__.update(
            num_update=count, _index_update_count=counts, _all_index_update_counts={0: counts}
        )
        if not saved.get("idx2name"):
            opt.idx2name = dict(enumerate(names))
        opt.__dict__.update(extra or {})
        yield
    finally:
        for k in keep:
            opt.__dict__.pop(k, None)
        opt.__dict__.update(saved)


def _extra(opt: Any) -> dict[str, jax.Array] | None:
    names = _global_names(opt)
    return {k: jnp.asarray(getattr(opt, k)) for k in names} if names else None


def _by_slot(treedef: Any, states: list) -> dict[str, PyTree]:
    """``{slot name: params-shaped tree}`` from the per-leaf states (leaf order). A tree
    without leaves (optax's ``tree_map_params`` probe) is its own slots: its slot names
    are unknown, and a params-shaped placeholder stands for all of them."""
    if treedef.num_leaves == 0:
        return jax.tree_util.tree_unflatten(treedef, [])
    cols: dict[str, list] = {}
    for j, st in enumerate(states):
        for path, x in jax.tree_util.tree_flatten_with_path(st)[0]:
            name = "state" + jax.tree_util.keystr(path)
            cols.setdefault(name, [None] * len(states))[j] = x
    return {k: jax.tree_util.tree_unflatten(treedef, col) for k, col in cols.items()}


def _per_leaf(opt: Any, treedef: Any, slots: PyTree, like: list) -> list:
    """The per-leaf states held by ``slots``, each with the structure, shapes and
    dtypes of ``like`` (what ``create_state_multi_precision`` returns); else a
    ``TypeError``."""
    want = _by_slot(treedef, like)
    spec = lambda t: jax.tree.map(  # noqa: E731
        lambda x: (tuple(x.shape), str(x.dtype)), t
    )
    try:
        ok = isinstance(slots, Mapping) and sorted(slots) == sorted(want) and all(
            jax.tree.structure(slots[k]) == jax.tree.structure(want[k])
            and spec(slots[k]) == spec(want[k])
            for k in want
        )
    except (TypeError, AttributeError):
        ok = False
    if not ok:
        raise TypeError(
            f"state must be the OptState returned by {type(opt).__name__}.init for "
            f"these {treedef.num_leaves} parameters (slots {sorted(want)}, each of "
            "init's shapes and dtypes)"
        )
    cols = {k: treedef.flatten_up_to(t) for k, t in slots.items()}
    out = []
    for j, st in enumerate(like):
        paths, st_def = jax.tree_util.tree_flatten_with_path(st)
        leaves = [cols["state" + jax.tree_util.keystr(p)][j] for p, _ in paths]
        out.append(jax.tree_util.tree_unflatten(st_def, leaves))
    return out


def functional_pair(opt: Any) -> tuple[Callable[..., Any], ...]:
    """``(init, update, slots, state_from_slots)`` for an MXNet-style optimizer
    instance ``opt`` (the fields of :class:`~mxjax.optimizer.Optimizer`)."""

    def create(params: Params) -> tuple[list, Any, list, PyTree]:
        names, leaves, treedef = _flatten_named(params, "params")
        with _stepping(opt, opt.begin_num_update, None, names):
            states = [
                opt.create_state_multi_precision(i, jnp.asarray(w))
                for i, w in enumerate(leaves)
            ]
            extra = _extra(opt)
        return names, treedef, states, extra

    def init(params: Params) -> OptState:
        _, treedef, states, extra = create(params)
        return OptState(
            count=jnp.asarray(opt.begin_num_update, jnp.int32),
            slots=_by_slot(treedef, states),
            extra=extra,
            skipped=jnp.zeros((), jnp.int32),
        )

    def template(params: Params) -> list:
        """The shapes of ``create``'s per-leaf states (its warnings were ``init``'s)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return jax.eval_shape(lambda p: create(p)[2], params)

    def step(grads: Grads, state: OptState, params: Params) -> tuple[Params, OptState]:
        names, leaves, treedef = _flatten_named(params, "params")
        g_leaves, g_def = jax.tree_util.tree_flatten(grads)
        if g_def != treedef:
            raise ValueError(
                f"grads and params have different tree structures:\n grads:  {g_def}\n "
                f"params: {treedef}"
            )
        if not isinstance(state, OptState):
            raise TypeError(
                f"state must be the OptState returned by {type(opt).__name__}.init, "
                f"got {type(state).__name__}"
            )
        per_leaf = _per_leaf(opt, treedef, state.slots, template(params))
        new_w, new_s = [], []
        with _stepping(opt, state.count, state.extra, names):
            for i, (name, w, g, s) in enumerate(zip(names, leaves, g_leaves, per_leaf)):
                w2, s2 = opt.update_multi_precision(i, w, g, s)
                w2 = jnp.asarray(w2)
                if w2.shape != jnp.shape(w):
                    raise ValueError(
                        f"{type(opt).__name__}.update returned a weight of shape "
                        f"{w2.shape} for parameter {name!r} of shape {jnp.shape(w)}"
                    )
                if jax.tree.structure(s2) != jax.tree.structure(s):
                    raise ValueError(
                        f"{type(opt).__name__}.update returned a state of another "
                        f"structure for parameter {name!r}: {jax.tree.structure(s2)}, "
                        f"create_state gave {jax.tree.structure(s)}"
                    )
                new_w.append(w2.astype(jnp.result_type(w)))
                new_s.append(jax.tree.map(lambda a, b: jnp.asarray(a, jnp.result_type(b)), s2, s))
            count = jnp.asarray(opt.num_update, jnp.int32)
            extra = _extra(opt)
        new_state = OptState(
            count=count,
            slots=_by_slot(treedef, new_s),
            extra=extra,
            skipped=state.skipped,
        )
        return jax.tree_util.tree_unflatten(treedef, new_w), new_state

    def update(*args: Any, **kwargs: Any) -> Any:
        """``update(grads, state, params)`` (mxjax), or MXNet's ``update(index, weight,
        grad, state)`` when called with four arguments (from a subclass's own code)."""
        if len(args) + len(kwargs) == 4:
            return type(opt).update(opt, *args, **kwargs)
        return step(*args, **kwargs)

    def slots(state: OptState) -> dict[str, dict[str, jax.Array]]:
        return slots_view(state.slots)

    state_from_slots = from_slots(init, opt.begin_num_update, lambda: _extra(opt))
    return init, update, slots, state_from_slots

