r"""MXNet's ``Optimizer`` class API on :class:`mxjax.optimizer.Optimizer`.

MXNet's documented way to write an optimizer is a subclass of ``Optimizer`` with two
methods, ``create_state(index, weight)`` and ``update(index, weight, grad, state)``, and
``@mx.optimizer.Optimizer.register`` above it. mxjax keeps that path, made functional:
``update`` *returns* ``(new_weight, new_state)`` where MXNet writes in place, and its
body uses ``jnp`` where MXNet uses NDArray operations (the README's "Porting your MXNet
optimizer" and ``examples/mxnet_ported_optimizers.py``, MXNet's Adamax, Nadam and DCASGD
ported line for line, show it).

A class that defines ``create_state`` or ``update`` (with MXNet's signature) is an
*MXNet-style* subclass: its constructor takes MXNet's base arguments
(``rescale_grad``, ``param_idx2name``, ``wd``, ``clip_gradient``, ``learning_rate``,
``lr_scheduler``, ``sym`` (refused: there are no symbols), ``begin_num_update``,
``multi_precision``, ``param_dict`` (refused)), and the instance is an ordinary mxjax
optimizer: ``opt.init(params)`` calls ``create_state_multi_precision`` for every leaf (in
tree order: the leaf's position is its ``index``), ``opt.update(grads, state, params)``
calls ``update_multi_precision`` for every leaf; both are pure and can be jitted. Inside,
MXNet's helpers behave as in MXNet: ``self._update_count(index)`` advances the leaf's count
in ``self._index_update_count`` and ``self.num_update`` (traced int32 values),
``self._get_lr(index)`` evaluates the ``lr_scheduler`` at ``num_update`` and applies
``lr_mult``, ``self._get_wd(index)`` applies ``wd_mult``; ``self.idx2name`` maps indices
to the leaves' MXNet names. The multi-precision layout is MXNet's base one: a float16
leaf's state is ``(float32 master copy, create_state(index, master))``.

Attributes the update *rebinds* are optimizer-global state in MXNet (Nadam's
``m_schedule``); list their names in the class attribute ``global_states`` and mxjax
carries them in ``state.extra`` (the attribute holds the value inside ``update``). Any
other attribute is a constant of the optimizer.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._learning_rate import resolve_learning_rate

_BASE_ARGS = (
    "rescale_grad",
    "param_idx2name",
    "wd",
    "clip_gradient",
    "learning_rate",
    "lr_scheduler",
    "sym",
    "begin_num_update",
    "multi_precision",
    "param_dict",
)


def is_mxnet_style(cls: type) -> bool:
    """Whether ``cls`` (a subclass of ``Optimizer``) defines MXNet's two methods."""
    return getattr(cls, "_mxnet_style", False)


def adopt_subclass(cls: type) -> None:
    """Mark a subclass that defines ``create_state``/``update`` as MXNet-style and check
    the signatures (called by ``Optimizer.__init_subclass__``)."""
    own = {k for k in ("create_state", "update") if callable(cls.__dict__.get(k))}
    if not own and not is_mxnet_style(cls):
        return
    for meth, params in (("create_state", 2), ("update", 4)):
        fn = getattr(cls, meth, None)
        if fn is None or not callable(fn):
            raise TypeError(f"{cls.__name__} must define {meth}() (MXNet's signature)")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        n = len([p for p in sig.parameters.values() if p.kind <= p.POSITIONAL_OR_KEYWORD])
        if n != params + 1 and not any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
            want = "(self, index, weight)" if meth == "create_state" else (
                "(self, index, weight, grad, state)"
            )
            raise TypeError(
                f"{cls.__name__}.{meth} must have MXNet's signature {meth}{want}, got "
                f"{meth}{sig}"
            )
    cls._mxnet_style = True
    if "__init__" in cls.__dict__:
        cls.__init__ = _recording_init(cls, cls.__dict__["__init__"])


def _recording_init(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a subclass's ``__init__`` so the instance records its arguments as
    ``hyperparams`` (for ``repr`` and checkpoints)."""

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:
            bound = inspect.signature(init).bind(self, *args, **kwargs)
            bound.apply_defaults()
            hp: dict[str, Any] = {}
            for k, p in inspect.signature(init).parameters.items():
                if p.kind == p.VAR_KEYWORD:
                    hp.update(bound.arguments.get(k, {}))
                elif k != "self" and p.kind != p.VAR_POSITIONAL:
                    hp[k] = bound.arguments[k]
            object.__setattr__(self, "hyperparams", {**self.hyperparams, **hp})

    return __init__


def dispatch_init(record_init: Callable[..., None]) -> Callable[..., None]:
    """``Optimizer.__init__``: the record's fields, or MXNet's base constructor for an
    MXNet-style subclass."""

    @functools.wraps(record_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if is_mxnet_style(type(self)):
            _mxnet_base_init(self, *args, **kwargs)
        else:
            record_init(self, *args, **kwargs)

    return __init__


def _mxnet_base_init(
    self: Any,
    rescale_grad: float = 1.0,
    param_idx2name: dict[int, str] | None = None,
    wd: float = 0.0,
    clip_gradient: float | None = None,
    learning_rate: float | None = None,
    lr_scheduler: Callable[[Any], Any] | None = None,
    sym: Any = None,
    begin_num_update: int = 0,
    multi_precision: bool = False,
    param_dict: Any = None,
) -> None:
    """MXNet 1.9.1's ``Optimizer.__init__``, attribute for attribute."""

    if sym is not None or param_dict is not None:
        raise ValueError(
            "sym and param_dict are MXNet objects; give lr_mult/wd_mult with "
            "set_lr_mult()/set_wd_mult() and leaf names with param_idx2name"
        )
    check_range("rescale_grad", rescale_grad)
    check_range("wd", wd, lo=0.0)
    if clip_gradient is not None:
        check_range("clip_gradient", clip_gradient, lo=0.0)
    if isinstance(begin_num_update, bool) or not isinstance(begin_num_update, int):
        raise TypeError(f"begin_num_update must be an int, got {begin_num_update!r}")
    if param_idx2name is not None and not isinstance(param_idx2name, dict):
        raise TypeError("param_idx2name should be a dict of param indexes to names.")
    rate, lr = resolve_learning_rate(learning_rate, lr_scheduler)
    set_ = object.__setattr__
    set_(self, "name", type(self).__name__.lower())
    set_(self, "rule", None)
    set_(self, "hyperparams", {
        k: v
        for k, v in dict(
            rescale_grad=rescale_grad, wd=wd, clip_gradient=clip_gradient,
            learning_rate=learning_rate, begin_num_update=begin_num_update,
            multi_precision=multi_precision,
        ).items()
        if v is not None
    })
    self.rescale_grad = float(rescale_grad)
    self.lr_scheduler = rate if callable(rate) else None
    self.lr = lr
    self.wd = float(wd)
    self.begin_num_update = begin_num_update
    self.num_update = begin_num_update
    self._all_index_update_counts = {0: {}}
    self._index_update_count = self._all_index_update_counts[0]
    self.clip_gradient = clip_gradient
    self.multi_precision = bool(multi_precision)
    self.aggregate_num = 0
    self.idx2name = dict(param_idx2name or {})
    self.sym_info = ()
    self.param_dict = {}
    self.set_lr_mult({})
    self.set_wd_mult({})
    from ._mxnet_style import functional_pair

    fields = ("init", "update", "slots", "state_from_slots")
    for field, fn in zip(fields, functional_pair(self), strict=True):
        set_(self, field, fn)


class MXNetMethods:
    """MXNet 1.9.1's ``Optimizer`` methods, inherited by :class:`Optimizer`.

    ``register`` and ``create_optimizer`` work on every optimizer class; the other
    methods serve MXNet-style subclasses (see the module docstring).
    """

    @staticmethod
    def register(klass: type) -> type:
        """Register an optimizer class under its lower-case name (MXNet's decorator);
        ``create(name)`` / ``Optimizer.create_optimizer(name)`` then build it."""
        from . import registry

        if not isinstance(klass, type):
            raise TypeError(f"Optimizer.register expects a class, got {klass!r}")
        registry.register(klass.__name__.lower(), klass)
        return klass

    @staticmethod
    def create_optimizer(name: str, **kwargs: Any) -> Any:
        """MXNet's ``Optimizer.create_optimizer``: ``create(name, **kwargs)``."""
        from . import registry

        return registry.create(name, **kwargs)

    # ------------------------------------------------------- MXNet-style subclasses

    @property
    def learning_rate(self) -> Any:
        """The current learning rate (the scheduler's at ``num_update``)."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        """Set the learning rate; refused when a scheduler is set (as MXNet)."""
        if self.lr_scheduler is not None:
            raise UserWarning(
                "LRScheduler of the optimizer has already been defined. Note that "
                "set_learning_rate can mutate the value of the learning rate of the "
                "optimizer only when the LRScheduler of the optimizer is undefined."
            )
        self.lr = lr

    def set_lr_mult(self, args_lr_mult: dict[Any, float]) -> None:
        """Per-parameter learning-rate multipliers, by name or index."""
        self.lr_mult = dict(args_lr_mult)

    def set_wd_mult(self, args_wd_mult: dict[Any, float]) -> None:
        """Per-parameter weight-decay multipliers; as MXNet, names in ``idx2name`` not
        ending in ``_weight``/``_gamma`` get 0."""
        self.wd_mult = {
            n: 0.0
            for n in self.idx2name.values()
            if not (n.endswith("_weight") or n.endswith("_gamma"))
        }
        self.wd_mult.update(args_wd_mult)

    def _update_count(self, index: Any) -> None:
        """Advance the update count of ``index`` (an int or a list) and ``num_update``."""
        for idx in index if isinstance(index, (list, tuple)) else [index]:
            if idx not in self._index_update_count:
                self._index_update_count[idx] = self.begin_num_update
            self._index_update_count[idx] = self._index_update_count[idx] + 1
            self.num_update = jnp.maximum(self._index_update_count[idx], self.num_update)

    def _mult(self, table: dict[Any, float], index: Any) -> float:
        if index in table:
            return table[index]
        if index in self.idx2name:
            return table.get(self.idx2name[index], 1.0)
        return 1.0

    def _get_lrs(self, indices: list[Any]) -> list[Any]:
        lr = self.lr_scheduler(self.num_update) if self.lr_scheduler is not None else self.lr
        return [lr * self._mult(self.lr_mult, i) for i in indices]

    def _get_lr(self, index: Any) -> Any:
        """The learning rate of ``index``: the schedule at ``num_update`` × ``lr_mult``."""
        return self._get_lrs([index])[0]

    def _get_wds(self, indices: list[Any]) -> list[float]:
        return [self.wd * self._mult(self.wd_mult, i) for i in indices]

    def _get_wd(self, index: Any) -> float:
        """The weight decay of ``index``: ``wd`` × ``wd_mult``."""
        return self._get_wds([index])[0]

    def create_state_multi_precision(self, index: int, weight: jax.Array) -> Any:
        """``create_state``, with a float32 master copy first for float16 weights under
        ``multi_precision`` (MXNet's base layout ``(master, state)``)."""
        if self.multi_precision and weight.dtype == jnp.float16:
            master = weight.astype(jnp.float32)
            return (master, self.create_state(index, master))
        if weight.dtype == jnp.float16:
            warnings.warn(
                "Accumulating with float16 in optimizer can lead to poor accuracy or "
                "slow convergence. Consider using multi_precision=True option of the "
                f"{type(self).__name__} optimizer",
                UserWarning,
                stacklevel=3,
            )
        return self.create_state(index, weight)

    def update_multi_precision(
        self, index: int, weight: jax.Array, grad: jax.Array, state: Any
    ) -> tuple[jax.Array, Any]:
        """``update`` on the float32 master copy for float16 weights under
        ``multi_precision``; returns ``(new_weight, new_state)``."""
        if self.multi_precision and weight.dtype == jnp.float16:
            master, inner = state
            new_master, new_inner = type(self).update(
                self, index, master, grad.astype(jnp.float32), inner
            )
            return new_master.astype(weight.dtype), (new_master, new_inner)
        return type(self).update(self, index, weight, grad, state)
