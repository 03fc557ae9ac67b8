r"""The pure ``(init, update)`` pair of an MXNet-style ``Optimizer`` subclass.

``init(params)`` calls ``create_state_multi_precision(index, weight)`` for each leaf in
tree order; ``update(grads, state, params)`` calls ``update_multi_precision(index,
weight, grad, state)`` for each leaf, which returns ``(new_weight, new_state)``. While a
call runs, the instance's ``num_update``/``_index_update_count`` hold the state's
update count (traced under ``jit``) and the attributes named in ``global_states`` hold
``state.extra``; afterwards the instance's attributes are restored, so the pair stays
pure. ``state.slots`` is a tuple of the per-leaf states in index order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from .._typing import Grads, Params
from ._contract import OptState
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


def functional_pair(opt: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(init, update)`` for an MXNet-style optimizer instance ``opt``."""

    def init(params: Params) -> OptState:
        names, leaves, _ = _flatten_named(params, "params")
        with _stepping(opt, opt.begin_num_update, None, names):
            states = tuple(
                opt.create_state_multi_precision(i, jnp.asarray(w))
                for i, w in enumerate(leaves)
            )
            extra = _extra(opt)
        return OptState(
            count=jnp.asarray(opt.begin_num_update, jnp.int32),
            slots=states,
            extra=extra,
            skipped=jnp.zeros((), jnp.int32),
        )

    def step(grads: Grads, state: OptState, params: Params) -> tuple[Params, OptState]:
        names, leaves, treedef = _flatten_named(params, "params")
        g_leaves, g_def = jax.tree_util.tree_flatten(grads)
        if g_def != treedef:
            raise ValueError(
                f"grads and params have different tree structures:\n grads:  {g_def}\n "
                f"params: {treedef}"
            )
        if not isinstance(state, OptState) or not isinstance(state.slots, tuple) or len(
            state.slots
        ) != len(leaves):
            raise TypeError(
                f"state must be the OptState returned by {type(opt).__name__}.init for "
                f"these {len(leaves)} parameters"
            )
        new_w, new_s = [], []
        with _stepping(opt, state.count, state.extra, names):
            for i, (name, w, g, s) in enumerate(zip(names, leaves, g_leaves, state.slots)):
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
        new_state = OptState(count=count, slots=tuple(new_s), extra=extra, skipped=state.skipped)
        return jax.tree_util.tree_unflatten(treedef, new_w), new_state

    def update(*args: Any, **kwargs: Any) -> Any:
        """``update(grads, state, params)`` (mxjax), or MXNet's ``update(index, weight,
        grad, state)`` when called with four arguments (from a subclass's own code)."""
        if len(args) + len(kwargs) == 4:
            return type(opt).update(opt, *args, **kwargs)
        return step(*args, **kwargs)

    return init, update

