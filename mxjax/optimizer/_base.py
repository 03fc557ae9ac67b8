r"""The shared MXNet optimizer behaviour, written once.

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

State layout: each leaf's slots keep the leaf's shape (as optax's do). To update in
place, jit with :func:`jit_update`: it donates params and state in the order JAX pairs
donated inputs with outputs, so XLA writes every buffer in place with no copies.
``jax.jit(opt.update, donate_argnums=(1, 2))`` works too, but JAX then pairs each new
parameter with a donated *state* buffer of the same shape (the state argument comes
first), and XLA inserts copies to break the resulting cycles. With ``multi_tensor=True``
small leaves share flat state buffers instead (:mod:`mxjax.optimizer._multi`); the base
talks to either layout through ``init``/``check``/``step`` (:class:`_PerLeaf` here).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._names import collisions, describe_collisions, path_name
from .._validate import real as check_range  # re-exported for the optimizers
from .._typing import Grads, Params, PyTree, Schedule
from ._mxnet_compat import MXNetMethods, adopt_subclass, dispatch_init
from ._packed import Layout, Packed
from ._rounding import no_contraction, unfused

LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


class Hyper(NamedTuple):
    """What the base hands a kernel besides the leaf's arrays.

    Attributes:
      lr: the leaf's learning rate, ``schedule(num_update) * lr_mult`` (compute dtype).
      wd: the leaf's weight decay, ``wd * wd_mult`` (compute dtype).
      t: this update's count, int32: ``begin_num_update + k`` on the k-th update.
      index: the leaf's position in tree order (a Python int).
      name: the leaf's MXNet-style name (``fc_weight``; see :mod:`mxjax._names`).
      num_leaves: the number of leaves (a Python int).
      extra: what the rule's ``prepare`` returned for this step, else ``None``.
      rescale_grad: the optimizer's ``rescale_grad`` (for kernels with ``wd_mode="raw"``).
      clip: the effective clip bound, or ``None`` when MXNet would not clip.
      decay: whether the leaf's weight decay is nonzero (a static bool: kernels may skip
        the ``wd * w`` term, which then only matters for non-finite weights).
    """

    lr: jax.Array
    wd: jax.Array
    t: jax.Array
    index: int
    name: str
    num_leaves: int
    extra: Any
    rescale_grad: float
    clip: float | None
    decay: bool = True


Slots = tuple[jax.Array, ...]
Kernel = Callable[[jax.Array, jax.Array, Slots, Hyper], tuple[jax.Array, Slots]]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One optimizer's algorithm and how MXNet's shared preamble applies to it.

    Attributes:
      kernel: ``kernel(w, g, slots, h) -> (new_w, new_slots)`` for one leaf. ``g`` is
        already preprocessed according to ``wd_mode``; ``slots`` is a tuple of arrays.
        Arrays have the leaf's shape.
      slots: names of the per-leaf state arrays; each starts as zeros like the weight
        (in the compute dtype, or float32 when ``state_dtype="float32"``).
      init_slots: a custom ``w -> slots`` initialiser (``w`` in the compute dtype), used
        instead of zeros.
      wd_mode: ``"in_clip"``: ``g = clip(rescale_grad * g + wd * w)`` (Adam, RMSProp, ...);
        ``"kernel"``: ``g = clip(rescale_grad * g)`` and the kernel applies ``h.wd``;
        ``"raw"``: the kernel receives the raw gradient (use :func:`rescale_clip`).
      clip_mode: MXNet's two conventions [Q7]. ``"fused"`` (C++ ops): clip only when
        ``clip_gradient`` is truthy and positive, so 0 or a negative value means no
        clipping. ``"python"`` (NDArray code): clip whenever it is not ``None``, so 0
        zeroes the gradient; a negative bound is refused.
      state_dtype: ``"weight"``: slots in the weight's dtype (float32 under
        multi_precision); ``"float32"``: slots always float32 (AdaGrad, RMSProp, AdaDelta,
        Ftrl). A float16/bfloat16 leaf of such an optimizer is computed in float32 and
        rounded back (MXNet 1.9.1 crashes on this combination).
      wd_suffixes: the name suffixes that keep weight decay under ``wd_by_name=True``.
      init_extra: ``() -> pytree``: optimizer-global state (Nadam's momentum schedule).
      prepare: ``(extra, t, lr, num_leaves) -> (step_extra, new_extra)``, run once per
        step before the kernels; ``step_extra`` reaches every kernel as ``h.extra``.
      count_offset: added to ``num_update`` when calling the schedule (LBSGD: -1) [Q5].
      elementwise: whether the kernel computes each element of a leaf from the same
        element of its inputs alone, the same way on every leaf (no use of the leaf's
        shape, size or rank, of ``h.index`` or ``h.name``, no random draws, no
        reductions). Under ``multi_tensor=True`` only such a kernel may run on several
        leaves at once (concatenated, or in the CPU custom call), and mxjax proves it
        from the kernel's jaxprs at trace time
        (:mod:`~mxjax.optimizer._verify`). ``None`` (the default): find out; a kernel
        that is not runs leaf by leaf on slices of the flat state, with a
        :class:`~mxjax.optimizer.FastPathFallbackWarning` once. ``True``: the same,
        but a kernel that is not is refused (``ValueError`` at trace time). ``False``:
        never; the state keeps the per-leaf layout (unless ``per_leaf_scalars``).
      per_leaf_scalars: the kernel is elementwise but for scalars of the whole leaf
        (sums over every axis of the leaf, as LAMB's norms, or values computed from
        ``h.index``, which it must accept as a traced int32). Under
        ``multi_tensor=True`` its state is flat too: the CPU custom call runs it over
        all leaves at once, other backends leaf by leaf on slices of the flat state.
        Proven at trace time as ``elementwise=True`` is (a kernel reading the leaf's
        shape or ``h.name``, or reducing over part of a leaf, is refused).
    """

    kernel: Kernel
    slots: tuple[str, ...] = ()
    init_slots: Callable[[jax.Array], Slots] | None = None
    wd_mode: Literal["in_clip", "kernel", "raw"] = "in_clip"
    clip_mode: Literal["fused", "python"] = "fused"
    state_dtype: Literal["weight", "float32"] = "weight"
    wd_suffixes: tuple[str, ...] = ("_weight", "_gamma")
    init_extra: Callable[[], PyTree] | None = None
    prepare: Callable[..., tuple[Any, PyTree]] | None = None
    count_offset: int = 0
    elementwise: bool | None = None
    per_leaf_scalars: bool = False

    @property
    def flat_state(self) -> bool:
        """Whether ``multi_tensor=True`` gives the rule flat (grouped) state."""
        return self.elementwise is not False or self.per_leaf_scalars


MASTER = "weight_master_copy"  # the slot name of a multi_precision master copy (MXNet's)


class OptState(NamedTuple):
    """The state of every mxjax optimizer.

    Attributes:
      count: int32 scalar, MXNet's ``num_update`` (``begin_num_update`` before the first
        update).
      slots: per-leaf layout: ``{slot name: tree}``, one tree with the params' structure
        per slot of the rule (``state.slots["mean"]["w"]``), as optax keeps its moments;
        under ``multi_precision`` also ``"weight_master_copy"``, the float32 copies, with
        ``None`` at the leaves that have none (float32 and float64 leaves). Multi-tensor
        layout: a :class:`~mxjax.optimizer.MultiSlots`. Read either, by parameter name,
        with ``opt.slots(state)``.
      extra: optimizer-global state (``None`` for most optimizers).
      skipped: int32 scalar, steps skipped for non-finite gradients (``skip_nonfinite``).
    """

    count: jax.Array
    slots: PyTree
    extra: PyTree
    skipped: jax.Array


class Common(TypedDict, total=False):
    """MXNet's base ``Optimizer`` arguments, accepted by every optimizer factory."""

    lr_scheduler: Schedule | None
    wd: float
    rescale_grad: float
    clip_gradient: float | None
    begin_num_update: int
    multi_precision: bool
    lr_mult: Mapping[str, float] | None
    wd_mult: Mapping[str, float] | None
    wd_by_name: bool
    skip_nonfinite: bool
    multi_tensor: bool


COMMON_DEFAULTS: dict[str, Any] = {
    "lr_scheduler": None,
    "wd": 0.0,
    "rescale_grad": 1.0,
    "clip_gradient": None,
    "begin_num_update": 0,
    "multi_precision": False,
    "lr_mult": None,
    "wd_mult": None,
    "wd_by_name": False,
    "skip_nonfinite": False,
    "multi_tensor": False,
}
"""The value each :class:`Common` argument has when it is not given."""


def _no_packing(params: Params) -> Packed:
    raise NotImplementedError(
        "this optimizer was not built by from_rule() and cannot pack parameters"
    )


def _no_slots(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(
        "this optimizer was not built by from_rule(): its state has no per-parameter "
        "slots view"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer(MXNetMethods):
    """A pure optimizer: ``state = opt.init(params)``,
    ``new_params, new_state = opt.update(grads, state, params)``.

    ``update`` returns the new parameters (not an increment, as MXNet's ``update``
    writes the weight). Both functions are pure and jit-compatible;
    ``jax.jit(opt.update, donate_argnums=(1, 2))`` updates in place.

    Attributes:
      init: ``params -> state``.
      update: ``(grads, state, params) -> (new_params, new_state)``.
      name: the MXNet registry name (``"custom"`` for user optimizers).
      hyperparams: the arguments the optimizer was created with.
      rule: the :class:`Rule` it was built from, if any.
      pack: ``params -> Packed``: the leaves in flat buffers, one per group of the
        multi-tensor layout (:mod:`mxjax.optimizer._packed`); ``init`` and ``update``
        accept the result in place of ``params`` (and of ``grads``).
      slots: ``state -> {parameter name: {slot name: array}}``: the per-parameter state
        in the parameter's shape, whatever the layout (per-leaf, ``multi_tensor=True``
        or packed); names as :func:`~mxjax.optimizer.leaf_names` gives them, slots as
        ``rule.slots`` names them, plus ``"weight_master_copy"`` under
        ``multi_precision``. Parameters without slots are absent.
      state_from_slots: ``(slots, params, *, count=None, extra=None, skipped=0) ->
        state``: the inverse of ``slots``: the state this optimizer's layout keeps for
        ``params`` (arrays or ``jax.ShapeDtypeStruct``; a ``Packed`` gives the packed
        layout's state), holding ``slots`` (every slot of every parameter, each of
        exactly the shape and dtype ``init`` makes), ``count`` (``num_update``;
        ``begin_num_update`` when ``None``) and ``extra`` (the rule's ``init_extra()``
        when ``None``).
    """

    init: Callable[[Params], PyTree]
    update: Callable[[Grads, PyTree, Params], tuple[Params, PyTree]]
    name: str = "custom"
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rule: Rule | None = None
    pack: Callable[[Params], Packed] = _no_packing
    slots: Callable[[PyTree], dict[str, dict[str, jax.Array]]] = _no_slots
    state_from_slots: Callable[..., PyTree] = _no_slots

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        adopt_subclass(cls)  # MXNet's create_state/update path (_mxnet_compat)


# A subclass defining MXNet's create_state/update is built by MXNet's base constructor.
Optimizer.__init__ = dispatch_init(Optimizer.__init__)  # type: ignore[method-assign]


# ----------------------------------------------------------------------------- helpers


def rescale_clip(g: jax.Array, h: Hyper) -> jax.Array:
    """``clip(rescale_grad * g)`` with the optimizer's clip convention."""
    g = h.rescale_grad * g if h.rescale_grad != 1.0 else g
    return g if h.clip is None else jnp.clip(g, -h.clip, h.clip)


def one_minus_pow(beta: float, t: jax.Array) -> jax.Array:
    r"""``1 - beta**t`` in float32 without cancellation.

    Computed as ``-expm1(t * log(beta))`` with ``log(beta)`` taken in float64 on the
    host, so it equals MXNet's float64 Python algebra (``1 - beta**t``) to float32
    round-off even when ``beta`` is close to 1.
    """
    if beta == 0.0:
        return jnp.ones((), jnp.float32)
    return -jnp.expm1(t.astype(jnp.float32) * jnp.float32(math.log(beta)))


def pow_f32(beta: float, t: jax.Array) -> jax.Array:
    """``beta**t`` rounded to float32, as C++ ``powf`` on a float32 ``beta`` gives it."""
    if beta == 0.0:
        return jnp.where(t == 0, 1.0, 0.0).astype(jnp.float32)
    lb = math.log(float(np.float32(beta)))
    return 1.0 + jnp.expm1(t.astype(jnp.float32) * jnp.float32(lb))


def int_pow(x: jax.Array, n: int | jax.Array, bound: int) -> jax.Array:
    """``x ** n`` for an integer ``0 <= n < bound``, static or traced.

    A static ``n`` is ``lax.integer_pow``; a traced one runs the same multiplications
    (binary powering) under masks, so both give the same bits.
    """
    if isinstance(n, int):
        return x**n
    acc, base = jnp.ones_like(x), x
    for bit in range(max(1, int(bound).bit_length())):
        acc = jnp.where((n >> bit) & 1 == 1, acc * base, acc)
        base = base * base
    return acc


# ------------------------------------------------------------------------ the preamble


def resolve_learning_rate(
    learning_rate: float | Schedule | None, lr_scheduler: Schedule | None
) -> tuple[float | Schedule, float | None]:
    """MXNet's rule for ``learning_rate`` and ``lr_scheduler`` [Q1].

    Returns ``(rate_or_schedule, learning_rate_as_float_or_None)``.

    * Neither given: 0.01.
    * A scheduler and no ``learning_rate``: the scheduler as it is.
    * A scheduler and a ``learning_rate`` different from its ``base_lr``: MXNet overwrites
      the scheduler's ``base_lr`` and announces it; mxjax does the same through the
      scheduler's ``with_base_lr`` (so the warmup target and Poly/Cosine's original
      ``base_lr`` stay as constructed, [Q33]) and warns. Optimizers whose MXNet class
      passes its own default ``learning_rate`` (Adam: 0.001, ...) therefore override the
      scheduler's ``base_lr`` unless ``learning_rate`` is given explicitly.
    * ``learning_rate`` may itself be a schedule (optax style).
    """
    if callable(learning_rate):
        if lr_scheduler is not None:
            raise ValueError(
                "give the schedule as learning_rate or as lr_scheduler, not both"
            )
        return learning_rate, None
    if learning_rate is not None:
        check_range("learning_rate", learning_rate, lo=0.0, none_ok=True)
        learning_rate = float(learning_rate)
    if lr_scheduler is None:
        rate = 0.01 if learning_rate is None else learning_rate
        return rate, rate
    _validate.function("lr_scheduler", lr_scheduler, none_ok=True)
    if learning_rate is None:
        return lr_scheduler, None
    base_lr = getattr(lr_scheduler, "base_lr", None)
    if base_lr is not None and base_lr != learning_rate:
        with_base_lr = getattr(lr_scheduler, "with_base_lr", None)
        if with_base_lr is None:
            raise ValueError(
                f"learning_rate={learning_rate} differs from lr_scheduler.base_lr="
                f"{base_lr} and the scheduler has no with_base_lr() to override it"
            )
        warnings.warn(
            f"learning_rate={learning_rate} overrides lr_scheduler.base_lr={base_lr} "
            "(MXNet behaviour: the optimizer's learning_rate wins; pass "
            "learning_rate=None to keep the scheduler's)",
            UserWarning,
            stacklevel=4,
        )
        lr_scheduler = with_base_lr(learning_rate)
    return lr_scheduler, learning_rate


@dataclasses.dataclass(frozen=True)
class _Config:
    """The validated base arguments."""

    rate: float | Schedule
    wd: float
    rescale_grad: float
    clip: float | None
    begin_num_update: int
    multi_precision: bool
    lr_mult: Mapping[str, float]
    wd_mult: Mapping[str, float]
    wd_by_name: bool
    skip_nonfinite: bool
    multi_tensor: bool


def _effective_clip(clip_gradient: float | None, mode: str) -> float | None:
    if mode == "python":  # MXNet's NDArray optimizers would clip to [-c, c] for c < 0
        return check_range("clip_gradient", clip_gradient, lo=0.0, none_ok=True)
    c = check_range("clip_gradient", clip_gradient, none_ok=True)
    # fused ops: `if self.clip_gradient:` and the op clips only when >= 0
    return c if c is not None and c > 0 else None


def _mults(
    name: str, mult: Mapping[str, float] | None, base: tuple[str, Any]
) -> dict[str, float]:
    """The multipliers, each finite and ``>= 0`` and its product with ``base`` (``(name, value)``:
    the learning rate or ``wd``; a schedule is skipped) within float32 too."""
    if mult is None:
        return {}
    rule = "a dict {leaf name: multiplier} or None"
    _validate.instance(name, mult, Mapping, rule)
    out = {}
    for k, v in mult.items():
        _validate.instance(f"{name} key {k!r}", k, str, "a leaf name (str)")
        out[k] = check_range(f"{name}[{k!r}]", v, lo=0.0)  # < 0: uphill, or growth
        if not callable(base[1]):
            check_range(f"{base[0]} * {name}[{k!r}]", base[1] * out[k])
    return out


def _config(rule: Rule, learning_rate: float | Schedule | None, given: Common) -> _Config:
    c: dict[str, Any] = {**COMMON_DEFAULTS, **given}
    rate, _ = resolve_learning_rate(learning_rate, c["lr_scheduler"])
    wd = check_range("wd", c["wd"], lo=0.0)
    rescale_grad = check_range("rescale_grad", c["rescale_grad"])
    # the count is int32 and the first update sees begin_num_update + 1
    begin = _validate.integer(
        "begin_num_update", c["begin_num_update"], lo=0, hi=_validate.INT32_MAX - 1
    )
    for flag in ("multi_precision", "wd_by_name", "skip_nonfinite", "multi_tensor"):
        _validate.flag(flag, c[flag])
    return _Config(
        rate=rate,
        wd=wd,
        rescale_grad=rescale_grad,
        clip=_effective_clip(c["clip_gradient"], rule.clip_mode),
        begin_num_update=begin,
        multi_precision=c["multi_precision"],
        lr_mult=_mults("lr_mult", c["lr_mult"], ("learning_rate", rate)),
        wd_mult=_mults("wd_mult", c["wd_mult"], ("wd", wd)),
        wd_by_name=c["wd_by_name"],
        skip_nonfinite=c["skip_nonfinite"],
        multi_tensor=c["multi_tensor"],
    )


class _Leaf(NamedTuple):
    """Static facts about one leaf, derived at trace time."""

    name: str
    dtype: jnp.dtype
    compute: jnp.dtype  # dtype the kernel runs in
    master: bool  # a float32 master copy is kept
    lr_mult: float
    wd_mult: float


def leaf_dtype(what: str, name: str, leaf: Any) -> jnp.dtype:
    """The dtype JAX gives ``leaf`` (a Python float is float32, or float64 under
    ``jax_enable_x64``; a NumPy float64 array float32 without it); ``TypeError`` naming
    the leaf and its type unless it is a real floating-point value."""
    try:
        dtype = jnp.dtype(jnp.result_type(leaf))
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        kind = f"dtype {dtype}" if dtype is not None else f"type {type(leaf).__name__}"
        raise TypeError(
            f"{what} {name!r} has {kind}; expected a floating-point array or a Python "
            "float"
        )
    return dtype


def _leaf_info(rule: Rule, cfg: _Config, names: list[str], leaves: list) -> list[_Leaf]:
    _check_names(rule, cfg, names)
    for kind, mult in (("lr_mult", cfg.lr_mult), ("wd_mult", cfg.wd_mult)):
        unknown = sorted(set(mult) - set(names))
        if unknown and names:  # a tree without leaves: optax's tree_map_params probe
            raise ValueError(
                f"{kind} names {unknown} match no parameter; parameters are {names}"
            )
    out = []
    for name, leaf in zip(names, leaves):
        dtype = leaf_dtype("parameter", name, leaf)
        low = dtype in LOW_PRECISION
        master = low and cfg.multi_precision
        compute = jnp.dtype(jnp.float32) if master or (
            low and rule.state_dtype == "float32"
        ) else dtype
        wd_mult = 1.0
        if cfg.wd_by_name and not name.endswith(rule.wd_suffixes):
            wd_mult = 0.0
        out.append(
            _Leaf(
                name,
                dtype,
                compute,
                master,
                cfg.lr_mult.get(name, 1.0),
                cfg.wd_mult.get(name, wd_mult),
            )
        )
    return out


class _Names(list):
    """Leaf names that collide, with the leaves' paths (for the message)."""

    paths: list[str]


def _flatten_named(params: Params, what: str) -> tuple[list[str], list, Any]:
    if params is None:
        raise ValueError(f"{what} is None: mxjax optimizers need the parameters")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [path_name(p) for p, _ in flat]
    if len(set(names)) != len(names):
        names = _Names(names)
        names.paths = [jax.tree_util.keystr(p) for p, _ in flat]
    return names, [x for _, x in flat], treedef


def _check_names(rule: Rule, cfg: _Config, names: list[str]) -> None:
    """Names that must be unique are, and ``wd_by_name`` matches some leaf."""
    if len(set(names)) != len(names):
        paths = getattr(names, "paths", [f"leaf #{i}" for i in range(len(names))])
        hit = {
            n: p
            for n, p in collisions(names, paths).items()
            if n in cfg.lr_mult or n in cfg.wd_mult
        }
        if hit:
            raise ValueError(
                describe_collisions(hit, "so its lr_mult / wd_mult entry hits all of them")
            )
    if cfg.wd_by_name and cfg.wd != 0 and names:
        if not any(n.endswith(rule.wd_suffixes) for n in names):
            warnings.warn(
                f"wd_by_name=True decays only leaves named *{' / *'.join(rule.wd_suffixes)}"
                f" and no leaf is (leaves: {names[:6]}{' ...' if len(names) > 6 else ''}), "
                "so nothing is decayed; flax nnx calls weights 'kernel' (names like "
                "'linear_kernel_value'): use wd_mult={name: 0.0} for the leaves to exempt",
                UserWarning,
                stacklevel=4,
            )


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


def _check_state(state: Any) -> None:
    if not isinstance(state, OptState):
        raise TypeError(
            f"state must be the OptState returned by this optimizer's init, got "
            f"{type(state).__name__}"
        )


def _check_update_trees(
    names: list[str], treedef: Any, p_leaves: list, grads: Grads, state: Any
) -> list:
    """Trace-time checks; returns the grads' leaves."""
    _check_state(state)
    g_flat, g_def = jax.tree_util.tree_flatten(grads)
    if g_def != treedef:
        raise ValueError(
            f"grads and params have different tree structures:\n grads:  {g_def}\n "
            f"params: {treedef}"
        )
    for name, g, w in zip(names, g_flat, p_leaves):
        if jnp.shape(g) != jnp.shape(w):
            raise ValueError(
                f"gradient of parameter {name!r} has shape {jnp.shape(g)}, the "
                f"parameter has shape {jnp.shape(w)}"
            )
        leaf_dtype("gradient of parameter", name, g)
    return g_flat


def _as_compute(infos: list[_Leaf], g_leaves: list) -> list:
    """Each gradient as an array of its leaf's compute dtype: a gradient of another
    float dtype (bfloat16 gradients of float32 parameters) is cast, as optax computes
    in the parameter's dtype. Gradients of the right dtype are untouched."""
    out = []
    for info, g in zip(infos, g_leaves):
        g = jnp.asarray(g)
        out.append(g if g.dtype in (info.dtype, info.compute) else g.astype(info.compute))
    return out


def _slot_names(rule: Rule, cfg: _Config) -> tuple[str, ...]:
    """The keys of a per-leaf ``state.slots`` (and of each parameter's slots view)."""
    return rule.slots + ((MASTER,) if cfg.multi_precision else ())


def _slots_per_leaf(treedef: Any, slots: PyTree, names: tuple[str, ...]) -> list:
    """Per leaf, the tuple of its slots (master copy last) from ``{name: tree}``."""
    if type(slots).__name__ == "MultiSlots":
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
    per_leaf = zip(*per_slot) if per_slot else ((),) * treedef.num_leaves
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
    want = _expected_slots(rule, info, tuple(jnp.shape(w)), jnp.result_type(w))
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


def _schedule(rate: float | Schedule, num_update: jax.Array) -> jax.Array:
    """The step's learning rate, float32. A schedule's result is checked when ``jit``
    traces: a real scalar (a shape-(1,) result would reshape 0-d parameters, a
    shape-(n,) one become per-element rates)."""
    if not callable(rate):
        return jnp.asarray(rate, jnp.float32)
    out = rate(num_update)
    dtype = jnp.result_type(out) if hasattr(out, "dtype") or isinstance(
        out, (int, float)
    ) else None
    if isinstance(out, bool) or dtype is None or not (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    ) or jnp.shape(out) != ():
        _validate.fail(
            "the learning-rate schedule's result",
            "a real scalar (shape ())",
            out if not hasattr(out, "shape") else jax.ShapeDtypeStruct(out.shape, out.dtype),
            f"schedule {rate!r} at num_update {num_update}",
        )
    return jnp.asarray(out, jnp.float32)


def _all_finite(leaves: Sequence[jax.Array]) -> jax.Array:
    ok = jnp.asarray(True)
    for g in leaves:
        ok = ok & jnp.all(jnp.isfinite(g))
    return ok


def apply_rule(
    rule: Rule,
    cfg: _Config,
    info: _Leaf,
    w: jax.Array | None,
    g: jax.Array,
    slots: Sequence[jax.Array],
    *,
    t: jax.Array,
    lr: jax.Array,
    extra: Any,
    index: int,
    num_leaves: int,
) -> tuple[jax.Array, Slots]:
    """One leaf (or one multi-tensor group) through MXNet's preamble and the kernel.

    ``w`` may be ``None`` under a master copy (the last slot). Returns the new weight in
    the leaf's dtype and the new slots (master copy last).
    """
    slots = tuple(slots)
    if info.master:
        *rest, w_c = slots
        slots = tuple(rest)
    else:
        w_c = jnp.asarray(w).astype(info.compute)
    g_c = jnp.asarray(g).astype(info.compute)
    decay = cfg.wd * info.wd_mult != 0.0
    h = Hyper(
        lr=(lr * info.lr_mult if info.lr_mult != 1.0 else lr).astype(info.compute),
        wd=jnp.asarray(cfg.wd * info.wd_mult, info.compute),
        t=t,
        index=index,
        name=info.name,
        num_leaves=num_leaves,
        extra=extra,
        rescale_grad=cfg.rescale_grad,
        clip=cfg.clip,
        decay=decay,
    )
    if rule.wd_mode == "in_clip":
        if decay:
            g_c = g_c * cfg.rescale_grad + h.wd * w_c
            g_c = g_c if cfg.clip is None else jnp.clip(g_c, -cfg.clip, cfg.clip)
        else:
            g_c = rescale_clip(g_c, h)
    elif rule.wd_mode == "kernel":
        g_c = rescale_clip(g_c, h)
    w_new, slots_new = rule.kernel(w_c, g_c, slots, h)
    # the state keeps init's types: a kernel computing in another dtype than a slot's
    # (float64 with float32 slots, a Python scalar) must not change the carry's type
    slots_new = tuple(
        new if jnp.result_type(new) == old.dtype and not _weak(new) else
        jnp.asarray(new).astype(old.dtype)
        for new, old in zip(slots_new, slots, strict=True)
    )
    if info.master:
        slots_new = (*slots_new, w_new)
    return unfused(w_new).astype(info.dtype), slots_new


def _weak(x: Any) -> bool:
    return not hasattr(x, "dtype") or bool(getattr(x, "weak_type", False))


class _PerLeaf:
    """The reference state layout: ``{slot name: params-shaped tree}``."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg
        self.names = _slot_names(rule, cfg)

    def init(self, infos: list[_Leaf], leaves: list, treedef: Any) -> PyTree:
        slots = [_init_leaf(self.rule, i, w) for i, w in zip(infos, leaves)]
        return _slots_by_name(treedef, slots, self.names)

    def fits(self, infos: list[_Leaf], layout: Layout) -> bool:
        """Packed parameters never fit per-leaf slots: they are unpacked to update."""
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
        new_params, new_slots = [], []
        per_leaf = _slots_per_leaf(treedef, slots, self.names)
        for j, (info, w, g, s) in enumerate(zip(infos, p_leaves, g_leaves, per_leaf)):
            w_new, s_new = apply_rule(
                self.rule, self.cfg, info, w, g, s, index=j, num_leaves=len(p_leaves), **kw
            )
            new_params.append(w_new)
            new_slots.append(s_new)
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


def _multi_layout(rule: Rule, cfg: _Config) -> Any:
    from ._multi import MultiTensor  # the multi-tensor layout builds on this module

    return MultiTensor(rule, cfg)


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
        (small leaves share flat state buffers; see :mod:`mxjax.optimizer._multi`).
    """
    unknown = set(common) - set(Common.__annotations__)
    if unknown:
        raise TypeError(
            f"{name}() got unexpected argument(s) {sorted(unknown)}; common arguments "
            f"are {sorted(Common.__annotations__)}"
        )
    cfg = _config(rule, learning_rate, common)
    if len(set(rule.slots)) != len(rule.slots) or MASTER in rule.slots or not all(
        isinstance(k, str) for k in rule.slots
    ):
        raise ValueError(
            f"Rule.slots must be distinct names (str), not {MASTER!r}; got {rule.slots!r}"
        )

    layout = _multi_layout(rule, cfg) if cfg.multi_tensor and rule.flat_state else (
        _PerLeaf(rule, cfg)
    )

    def pack(params: Params) -> Packed:
        from ._multi import plan  # the multi-tensor layout builds on this module

        if isinstance(params, Packed):
            raise TypeError("params are packed already")
        names, leaves, treedef = _flatten_named(params, "params")
        infos = _leaf_info(rule, cfg, names, leaves)
        groups = [gr.members for gr in plan(infos, leaves)]
        return Layout.of(params, groups).pack(params, "params")

    def init(params: Params) -> OptState:
        values = None
        if isinstance(params, Packed):
            lay = params.layout
            names, treedef = list(lay.names), lay.treedef
            # empty leaves (in no buffer) get per-leaf slots: their (empty) values
            leaves = [jnp.zeros(s.shape, s.dtype) if s.size == 0 else s for s in lay.structs]
            infos = _leaf_info(rule, cfg, names, leaves)
            if not layout.fits(infos, params.layout):
                return init(params.unpack())
            values = params.buffers
        else:
            names, leaves, treedef = _flatten_named(params, "params")
            infos = _leaf_info(rule, cfg, names, leaves)
        for info in infos:
            if info.dtype in LOW_PRECISION and not info.master:
                warnings.warn(
                    f"Accumulating with {info.dtype} in optimizer can lead to poor "
                    "accuracy or slow convergence. Consider using multi_precision=True "
                    f"(parameter {info.name!r})",
                    UserWarning,
                    stacklevel=2,
                )
        slots = (
            layout.init(infos, leaves, treedef)
            if values is None
            else layout.init(infos, leaves, treedef, values)
        )
        return OptState(
            count=jnp.asarray(cfg.begin_num_update, jnp.int32),
            slots=slots,
            extra=None if rule.init_extra is None else rule.init_extra(),
            skipped=jnp.zeros((), jnp.int32),
        )

    def update(grads: Grads, state: OptState, params: Params) -> tuple[Params, OptState]:
        packed = isinstance(params, Packed)
        if packed:
            lay = params.layout
            grads = lay.accept(grads)
            names, p_leaves, treedef = list(lay.names), lay.structs, lay.treedef
            infos = _leaf_info(rule, cfg, names, p_leaves)
            if not layout.fits(infos, params.layout):  # leaf by leaf, packed again
                new_params, new_state = update(grads.unpack(), state, params.unpack())
                return lay.pack(new_params, "params"), new_state
            _check_state(state)
            g_leaves = list(grads.buffers)
        else:
            names, p_leaves, treedef = _flatten_named(params, "params")
            infos = _leaf_info(rule, cfg, names, p_leaves)
            g_leaves = _check_update_trees(names, treedef, p_leaves, grads, state)
            g_leaves = _as_compute(infos, g_leaves)
        layout.check(infos, p_leaves, treedef, state.slots)
        _check_extra(rule, state.extra)

        t = state.count + 1
        lr = _schedule(cfg.rate, t + rule.count_offset)
        step_extra, new_extra = (
            (None, state.extra)
            if rule.prepare is None
            else rule.prepare(state.extra, t, lr, len(p_leaves))
        )
        kw = dict(t=t, lr=lr, extra=step_extra)
        if packed:
            new_bufs, new_slots = no_contraction(
                lambda p, g, s, kw: layout.step_packed(infos, lay, p, g, s, **kw)
            )(params.buffers, grads.buffers, state.slots, kw)
            new_params = Packed(new_bufs, lay)
        else:
            # Every operation rounds as MXNet's does (no FMA or rsqrt under jit).
            new_leaves, new_slots = no_contraction(
                lambda p, g, s, kw: layout.step(infos, p, g, treedef, s, **kw)
            )(p_leaves, g_leaves, state.slots, kw)
            new_params = jax.tree_util.tree_unflatten(treedef, new_leaves)
        new_state = OptState(count=t, slots=new_slots, extra=new_extra, skipped=state.skipped)
        if cfg.skip_nonfinite:
            ok = _all_finite(g_leaves) & jnp.isfinite(lr)  # a NaN rate: skipped too
            keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
            new_params = jax.tree.map(keep, new_params, params)
            new_state = jax.tree.map(keep, new_state, state)
            new_state = new_state._replace(
                skipped=state.skipped + (~ok).astype(jnp.int32)
            )
        return new_params, new_state

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
        pack=pack,
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
