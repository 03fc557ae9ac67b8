"""The shared MXNet optimizer behaviour, written once.

Every mxjax optimizer is an :class:`Optimizer`: a pure ``(init, update)`` pair built by
:func:`from_rule` from a :class:`Rule`, which holds one algorithm's per-leaf *kernel* and
says how MXNet's preamble applies to it. The base owns everything MXNet's ``Optimizer``
base class owns:

* the update count (``num_update``, starting at ``begin_num_update``; the first update
  sees ``t = begin_num_update + 1``),
* the learning rate: a float, or any step-to-rate function (``lr_scheduler``), called with
  ``num_update`` after the increment (1 on the first update), times the leaf's ``lr_mult``,
* weight decay ``wd`` times the leaf's ``wd_mult`` (optionally MXNet Module's rule,
  ``wd_by_name=True``: decay only leaves named ``*_weight`` / ``*_gamma``),
* ``rescale_grad`` and ``clip_gradient``, and where the weight decay enters relative to
  the clip (``Rule.wd_mode``),
* ``multi_precision``: float16 and bfloat16 leaves keep a float32 master copy,
* trace-time checks of the trees, shapes and dtypes, naming the offending leaf,
* ``skip_nonfinite``: a step whose gradients hold a NaN or Inf leaves params and state
  untouched and is counted in ``state.skipped``.

Kernels never walk the tree: the base applies them leaf by leaf, so the same kernels can be
applied to other layouts of the same data.

State layout (per leaf): ``state.slots`` is ``{slot name: params-shaped tree}`` and each slot keeps
its leaf's shape, dtype-stable type and sharding (as optax's states do, so
``optax.tree_utils.tree_map_params`` and explicit sharding work); ``opt.slots(state)``
and ``opt.state_from_slots`` convert to and from ``{parameter: {slot: array}}`` on every
layout. Gradients of another float dtype are cast to the leaf's compute dtype. To update
in place, jit with :func:`jit_update`: it donates params and state in the order JAX pairs
donated inputs with outputs, so XLA writes every buffer in place with no copies.
``jax.jit(opt.update, donate_argnums=(1, 2))`` works too, but JAX then pairs each new
parameter with a donated *state* buffer of the same shape (the state argument comes
first), and XLA inserts copies to break the resulting cycles. With ``multi_tensor=True``
(or ``"auto"``, the default, where :mod:`._choose` measured it faster) small leaves share
flat state buffers instead (:mod:`mxjax.optimizer._multi`); the base
talks to either layout through the :class:`~mxjax.optimizer._layout.StateLayout`
protocol (``init``/``check``/``step``), and sees a plain tree and packed parameters
(``opt.pack``) alike through their :class:`~mxjax.optimizer._params.ParamView`, which
alone asks the layout whether packed buffers ``fits`` it and steps them
(``step_packed``) or falls back to the unpacked tree.

This module ties the parts together (:func:`from_rule`, :func:`jit_update`); each part
lives in a module of its own concern: :mod:`._contract` (what a rule, kernel, state and
optimizer are), :mod:`._learning_rate` (MXNet's ``learning_rate``/``lr_scheduler``
rule), :mod:`._kernel_math` (helpers for kernels), :mod:`._preamble` (MXNet's shared
preamble and the trace-time checks), :mod:`._layout` (the layout protocol, the per-leaf
layout and the layout-independent slot view), :mod:`._choose` (which layout
``multi_tensor`` picks), :mod:`._params` (the parameters' view: a plain tree or packed
buffers, and ``opt.pack``), :mod:`._rounding` (MXNet's rounding under ``jit``: each layout
passes the arithmetic XLA compiles through it, not the custom call), and
:mod:`mxjax._validate` (argument validation).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._typing import Grads, Params, PyTree, Schedule
from ._contract import (
    LOW_PRECISION,
    MASTER,
    Common,
    Optimizer,
    OptState,
    Rule,
)
from ._choose import Layouts
from ._layout import (
    _check_extra,
    from_slots,
    slots_view,
)
from ._params import pack, param_view
from ._preamble import _all_finite, _check_state, _config, _schedule

__all__ = ["from_rule", "jit_update"]


def from_rule(
    rule: Rule,
    *,
    name: str = "custom",
    learning_rate: float | Schedule | None = None,
    hyperparams: Mapping[str, Any] | None = None,
    **common: Any,
) -> Optimizer:
    """Build an :class:`Optimizer` from a per-leaf :class:`Rule` and MXNet's base args.

    Args:
      rule: the algorithm.
      name: the registry name shown in ``repr`` and checkpoints.
      learning_rate: a float, ``None`` (0.01, or the scheduler's), or a schedule.
      hyperparams: the optimizer's own arguments, recorded on the result.
      **common: MXNet's base arguments (:class:`Common`): ``lr_scheduler``, ``wd``,
        ``rescale_grad``, ``clip_gradient``, ``begin_num_update``, ``multi_precision``,
        ``lr_mult``, ``wd_mult``, ``wd_by_name``, ``skip_nonfinite``, ``multi_tensor``
        (``True``: small leaves share flat state buffers, see
        :mod:`mxjax.optimizer._multi`; ``False``: per-leaf state; ``"auto"``, the
        default: chosen at ``init``, see :mod:`mxjax.optimizer._choose`).
    """
    unknown = set(common) - set(Common.__annotations__)
    if unknown:
        raise TypeError(
            f"{name}() got unexpected argument(s) {sorted(unknown)}; common arguments "
            f"are {sorted(Common.__annotations__)}"
        )
    cfg = _config(rule, learning_rate, common)
    if not all(isinstance(k, str) for k in rule.slots):
        raise TypeError(f"Rule.slots must be names (str), got {rule.slots!r}")
    if len(set(rule.slots)) != len(rule.slots) or MASTER in rule.slots:
        raise ValueError(
            f"Rule.slots must be distinct names other than {MASTER!r} (the state keys "
            f"slots by name), got {rule.slots!r}"
        )

    layouts = Layouts(rule, cfg)

    def init(params: Params) -> OptState:
        view = param_view(rule, cfg, layouts.for_params(params), params)
        for info in view.infos:
            if info.dtype in LOW_PRECISION and not info.master:
                warnings.warn(
                    f"Accumulating with {info.dtype} in optimizer can lead to poor "
                    "accuracy or slow convergence. Consider using multi_precision=True "
                    f"(parameter {info.name!r})",
                    UserWarning,
                    stacklevel=2,
                )
        return OptState(
            count=jnp.asarray(cfg.begin_num_update, jnp.int32),
            slots=view.init_slots(),
            extra=None if rule.init_extra is None else rule.init_extra(),
            skipped=jnp.zeros((), jnp.int32),
        )

    def update(grads: Grads, state: OptState, params: Params) -> tuple[Params, OptState]:
        layout = layouts.for_params(params)
        view = param_view(rule, cfg, layout, params, grads)
        g_values = view.grads(state)
        layout.check(view.infos, view.leaves, view.treedef, state.slots)
        _check_extra(rule, state.extra)

        t = state.count + 1
        lr = _schedule(cfg.rate, t + rule.count_offset)
        step_extra, new_extra = (
            (None, state.extra)
            if rule.prepare is None
            else rule.prepare(state.extra, t, lr, len(view.leaves))
        )
        kw = dict(t=t, lr=lr, extra=step_extra)
        new_values, new_slots = view.step(view.values, g_values, state.slots, kw)
        new_params = view.rebuild(new_values)
        new_state = OptState(count=t, slots=new_slots, extra=new_extra, skipped=state.skipped)
        if cfg.skip_nonfinite:
            ok = _all_finite(g_values) & jnp.isfinite(lr)  # a NaN rate: skipped too
            keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
            new_params = jax.tree.map(keep, new_params, view.params)
            new_state = jax.tree.map(keep, new_state, state)
            new_state = new_state._replace(
                skipped=state.skipped + (~ok).astype(jnp.int32)
            )
        return view.finish(new_params), new_state

    def slots(state: OptState) -> dict[str, dict[str, jax.Array]]:
        _check_state(state)
        return slots_view(state.slots)

    hp = dict(hyperparams or {})
    if learning_rate is not None:
        hp.setdefault("learning_rate", learning_rate)
    hp.update(common)
    return Optimizer(
        init=init,
        update=update,
        name=name,
        hyperparams=hp,
        rule=rule,
        pack=functools.partial(pack, rule, cfg),
        slots=slots,
        state_from_slots=from_slots(
            init,
            cfg.begin_num_update,
            lambda: None if rule.init_extra is None else rule.init_extra(),
            lambda extra: _check_extra(rule, extra),
        ),
    )

def jit_update(opt: Optimizer, *, donate: bool = True) -> Callable[..., Any]:
    """``opt.update`` jitted, with params and state donated so XLA updates in place.

    The result is called like ``opt.update``: ``new_params, new_state = step(grads,
    state, params)``. Internally the jitted function takes ``(params, state, grads)``:
    JAX pairs donated inputs with outputs of the same shape in order, and only this
    order pairs every parameter and state buffer with its own successor. (With
    ``jax.jit(opt.update, donate_argnums=(1, 2))`` the state comes first, new
    parameters are paired with state buffers, and XLA must insert copies.)

    Args:
      opt: the optimizer.
      donate: donate params and state (their buffers are invalid after the call).
    """
    step = jax.jit(
        lambda params, state, grads: opt.update(grads, state, params),
        donate_argnums=(0, 1) if donate else (),
    )

    def update(grads: Grads, state: PyTree, params: Params) -> tuple[Params, PyTree]:
        return step(params, state, grads)

    update.lower = lambda grads, state, params: step.lower(params, state, grads)  # type: ignore[attr-defined]
    return update
