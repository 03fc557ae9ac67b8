r"""Bridges between mxjax and optax: optimizers and schedules, both ways.

This is the only mxjax module that imports optax.

* :func:`to_optax` turns an mxjax :class:`~mxjax.optimizer.Optimizer` into an
  ``optax.GradientTransformation`` (so it composes with ``optax.chain``,
  ``optax.MultiSteps``, ``optax.apply_if_finite``, ``flax.nnx.Optimizer``, ...).
* :func:`to_optax_factory` does the same for a factory, exposing ``learning_rate`` as
  the one hyperparameter that ``optax.inject_hyperparams`` may change during training.
* :func:`from_optax` turns any optax transformation into an mxjax ``Optimizer``.
* :func:`to_optax_schedule` / :func:`from_optax_schedule` convert learning-rate
  schedules between the two step conventions: an optax schedule is called with
  ``count`` = 0 on the first update, an MXNet/mxjax scheduler with ``num_update`` = 1.

**Updates versus new parameters.** An mxjax ``update`` returns the new parameters (as
MXNet's ``update`` writes the weight); an optax ``update`` returns an increment. The
adapter forms ``updates = new_params - params`` in the parameters' dtype, so
``optax.apply_updates(params, updates)`` gives ``new_params`` up to one rounding of the
addition (exactly, whenever ``new_params`` and ``params`` are within a factor 2 of each
other, by Sterbenz's lemma). Under ``multi_precision`` the float32 master copy lives in
the optimizer state and is not affected by that rounding.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._typing import Grads, Params, PyTree, Schedule
from .optimizer import Optimizer
from .optimizer import registry as _optimizer_registry

__all__ = [
    "OptaxSchedule",
    "from_optax",
    "from_optax_schedule",
    "to_optax",
    "to_optax_factory",
    "to_optax_schedule",
]


def to_optax(opt: Optimizer) -> optax.GradientTransformationExtraArgs:
    """Wrap an mxjax optimizer as an ``optax.GradientTransformationExtraArgs``.

    The transformation's state is the optimizer's own state (an ``OptState``); its
    ``update(grads, state, params)`` returns ``new_params - params``. A state whose
    containers were rebuilt by a framework (``flax.nnx.Optimizer`` turns tuples into
    int-keyed mappings) is re-packed into the optimizer's layout, leaf order kept.
    Whatever the transformation receives as ``updates`` is treated as the gradient, so
    ``optax.chain(optax.clip_by_global_norm(1.0), to_optax(opt))`` clips before the
    MXNet update (MXNet's own ``clip_gradient`` clips elementwise, afterwards).

    Args:
      opt: an mxjax optimizer, e.g. ``mxjax.optimizer.create("adam")``.

    Gradients of another float dtype than their parameter (bfloat16 gradients of
    float32 parameters, as ``optax.MultiSteps`` or mixed precision hand them over) are
    cast to the parameter's compute dtype before MXNet's preamble; other shapes or
    trees are refused.

    Returns:
      A ``GradientTransformationExtraArgs``: its ``update(grads, state, params,
      **extra_args)`` accepts and ignores extra keyword arguments (``value=loss``, as
      ``flax.nnx.Optimizer.update`` forwards them), requires ``params`` and raises a
      ``ValueError`` naming the optimizer without them.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> import mxjax as mx
      >>> from mxjax.adapters import to_optax
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0),
      ...                  to_optax(mx.optimizer.sgd(learning_rate=0.5)))
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
      >>> optax.apply_updates(params, updates)["w"]
      Array([0.7, 0.6], dtype=float32)
    """
    if not isinstance(opt, Optimizer):
        raise TypeError(
            f"to_optax expects an mxjax Optimizer, got {type(opt).__name__}; use "
            "to_optax_factory for a factory or a registry name"
        )

    layouts: dict[Any, Any] = {}

    def _repack(state: PyTree, params: Params) -> PyTree:
        """The state in ``opt.init``'s layout (``flax.nnx.Optimizer`` hands it back
        with the slot tuples turned into int-keyed mappings; the leaves keep order)."""
        key = (
            jax.tree.structure(params),
            tuple((jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(params)),
        )
        if key not in layouts:
            with warnings.catch_warnings():  # init's advice was given by tx.init
                warnings.simplefilter("ignore")
                layouts[key] = jax.eval_shape(opt.init, params)
        expected = layouts[key]
        treedef = jax.tree.structure(expected)
        if jax.tree.structure(state) == treedef:
            return state
        leaves, want = jax.tree.leaves(state), jax.tree.leaves(expected)
        found = [(jnp.shape(x), jnp.result_type(x)) for x in leaves]
        if found != [(w.shape, w.dtype) for w in want]:
            raise ValueError(
                f"state does not fit mxjax optimizer {opt!r} on these params: expected "
                f"the layout {treedef}, got {jax.tree.structure(state)}"
            )
        return jax.tree.unflatten(treedef, leaves)

    def init_fn(params: Params) -> PyTree:
        return opt.init(params)

    def update_fn(
        updates: Grads, state: PyTree, params: Params | None = None, **extra_args: Any
    ) -> tuple[Grads, PyTree]:
        del extra_args  # optax's contract: callers may pass any (``value=loss``, ...)
        if params is None:
            raise ValueError(
                f"mxjax optimizer {opt!r} needs the parameters: call "
                "tx.update(grads, state, params) (MXNet updates compute the new "
                "weight from the old one)"
            )
        new_params, new_state = opt.update(updates, _repack(state, params), params)
        increments = jax.tree.map(
            lambda new, old: (new - old).astype(jnp.result_type(old)),
            new_params,
            params,
        )
        return increments, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def to_optax_factory(
    factory: str | Callable[..., Optimizer], /, **fixed: Any
) -> Callable[..., optax.GradientTransformation]:
    """A ``learning_rate -> GradientTransformation`` factory for ``inject_hyperparams``.

    mxjax optimizers validate and close over their hyperparameters at construction
    (Python floats, Python branches such as ``wd != 0``), so they cannot be rebuilt
    from traced values. The learning rate is the exception: it may be any
    step-to-rate function, so a traced value becomes the constant schedule
    ``lambda num_update: value``. This function therefore fixes every other argument
    now and leaves ``learning_rate`` as the only parameter of the returned factory, so
    ``optax.inject_hyperparams`` injects exactly that one.

    Notes:
      * A schedule given to ``inject_hyperparams`` is an *optax* schedule: it is called
        with ``count`` = 0 on the first update (wrap an mxjax scheduler with
        :func:`to_optax_schedule`).
      * ``inject_hyperparams`` casts the rate to the params' dtype; pass
        ``hyperparam_dtype=jnp.float32`` for float16/bfloat16 params to keep mxjax's
        float32 learning rate.
      * To change another hyperparameter (``wd``, ``momentum``, ...), build a new
        optimizer: its state layout does not depend on the values, so the old state can
        be kept.

    Args:
      factory: an optimizer factory (``mxjax.optimizer.adam``) or a registry name.
      **fixed: the factory's other arguments, fixed for the whole run.

    Returns:
      ``make(learning_rate) -> GradientTransformation`` (built with :func:`to_optax`);
      ``learning_rate`` defaults to the factory's default.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from mxjax.adapters import to_optax_factory
      >>> make = to_optax_factory("sgd", momentum=0.9)
      >>> tx = optax.inject_hyperparams(make)(learning_rate=0.1)
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5)  # takes effect now
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> updates["w"]
      Array([-0.5, -0.5], dtype=float32)
    """
    if isinstance(factory, str):
        name = factory
        factory = _optimizer_registry.get(name)
    else:
        name = getattr(factory, "__name__", repr(factory))
    if not callable(factory):
        raise TypeError(f"factory must be callable or a registry name, got {factory!r}")
    if "learning_rate" in fixed:
        raise TypeError(
            "to_optax_factory: give learning_rate to the returned factory (that is the "
            "hyperparameter inject_hyperparams can change), not as a fixed argument"
        )
    param = inspect.signature(factory).parameters.get("learning_rate")
    default = None if param is None or param.default is param.empty else param.default

    def make(learning_rate: Any = default) -> optax.GradientTransformation:
        if hasattr(learning_rate, "dtype") and not isinstance(learning_rate, float):
            value = learning_rate
            learning_rate = lambda num_update: value  # noqa: E731
        return to_optax(factory(learning_rate=learning_rate, **fixed))

    make.__name__ = f"{name}_for_optax"
    make.__doc__ = f"``to_optax({name}(learning_rate=..., **{fixed!r}))``."
    return make


def from_optax(
    tx: optax.GradientTransformation,
    *,
    name: str = "optax",
    hyperparams: dict[str, Any] | None = None,
) -> Optimizer:
    """Wrap an optax transformation as an mxjax :class:`~mxjax.optimizer.Optimizer`.

    ``update(grads, state, params)`` runs ``tx.update`` and returns
    ``optax.apply_updates(params, updates)``, so the trajectory is optax's own, bit for
    bit. The optax state is the mxjax state.

    Args:
      tx: any ``optax.GradientTransformation``.
      name: the name recorded on the optimizer (shown in ``repr``, checked by
        :mod:`mxjax.checkpoint`).
      hyperparams: what to record as the optimizer's hyperparameters (optax does not
        expose them), e.g. ``{"learning_rate": 1e-3}``; checked by
        :mod:`mxjax.checkpoint`.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from mxjax.adapters import from_optax
      >>> opt = from_optax(optax.sgd(0.5), hyperparams={"learning_rate": 0.5})
      >>> params = {"w": jnp.ones(2)}
      >>> new, state = opt.update({"w": jnp.ones(2)}, opt.init(params), params)
      >>> new["w"]
      Array([0.5, 0.5], dtype=float32)
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"from_optax expects an optax transformation, got {tx!r}")

    def init(params: Params) -> PyTree:
        return tx.init(params)

    def update(grads: Grads, state: PyTree, params: Params) -> tuple[Params, PyTree]:
        updates, new_state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), new_state

    return Optimizer(
        init=init, update=update, name=name, hyperparams=dict(hyperparams or {})
    )


# ---------------------------------------------------------------------------- schedules


def _describe(fn: Callable[..., Any]) -> str:
    """A process-independent description of ``fn`` (no memory address)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(fn))


class OptaxSchedule:
    """An optax schedule seen as an mxjax/MXNet lr scheduler.

    ``sched(num_update) == fn(num_update - 1)``: MXNet's first update is
    ``num_update`` = 1, optax's is ``count`` = 0. Built by :func:`from_optax_schedule`.

    Attributes:
      fn: the optax schedule.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: optax.Schedule) -> None:
        if not callable(fn):
            raise TypeError(f"an optax schedule must be callable, got {fn!r}")
        self.fn = fn

    def __call__(self, num_update: jax.typing.ArrayLike) -> jax.Array:
        return jnp.asarray(self.fn(jnp.asarray(num_update) - 1))

    def __repr__(self) -> str:
        return f"from_optax_schedule({_describe(self.fn)})"


def from_optax_schedule(fn: optax.Schedule) -> OptaxSchedule:
    """Use an optax schedule as an mxjax ``lr_scheduler`` / ``learning_rate``.

    Returns ``sched`` with ``sched(num_update) == fn(num_update - 1)``, so the k-th
    update (k = 1, 2, ...) gets the same rate in both libraries.

    Examples:
      >>> import optax
      >>> from mxjax.adapters import from_optax_schedule
      >>> f = optax.piecewise_constant_schedule(1.0, {2: 0.1})
      >>> s = from_optax_schedule(f)
      >>> [round(float(s(n)), 6) for n in (1, 2, 3)]  # == [f(0), f(1), f(2)]
      [1.0, 1.0, 0.1]
    """
    return OptaxSchedule(fn)


def to_optax_schedule(sched: Schedule) -> optax.Schedule:
    """Use an MXNet-style lr scheduler as an optax schedule: ``sched(count + 1)``.

    Args:
      sched: any ``num_update -> lr`` function (mxjax schedulers are jit-safe; a
        scheduler written with Python ``if``/``while`` works only outside ``jit``).

    Examples:
      >>> from mxjax.adapters import to_optax_schedule
      >>> mx_step = lambda n: 1.0 if n <= 2 else 0.1  # MXNet-style, n from 1
      >>> f = to_optax_schedule(mx_step)
      >>> [f(c) for c in (0, 1, 2)]
      [1.0, 1.0, 0.1]
    """
    if not callable(sched):
        raise TypeError(f"an lr scheduler must be callable, got {sched!r}")
    if isinstance(sched, OptaxSchedule):
        return sched.fn
    return lambda count: sched(count + 1)
