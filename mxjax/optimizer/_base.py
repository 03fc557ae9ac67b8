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

from .._names import path_name
from .._typing import Grads, Params, PyTree, Schedule
from ._packed import Layout, Packed

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
      elementwise: the kernel may run on several leaves concatenated into one flat
        buffer (``multi_tensor=True``): it is elementwise, draws no random numbers and
        does not use ``h.index`` or ``h.name``.
      per_leaf_scalars: the kernel is elementwise but for scalars of the whole leaf
        (sums over the leaf, as LAMB's norms, or values computed from ``h.index``, which
        it must accept as a traced int32). Under ``multi_tensor=True`` its state is flat
        too: the CPU custom call runs it over all leaves at once, other backends leaf by
        leaf on slices of the flat state.
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
    elementwise: bool = True
    per_leaf_scalars: bool = False


class OptState(NamedTuple):
    """The state of every mxjax optimizer.

    Attributes:
      count: int32 scalar, MXNet's ``num_update`` (``begin_num_update`` before the first
        update).
      slots: a tree with the params' structure whose leaves are tuples of the leaf's slot
        arrays; the float32 master copy comes last under ``multi_precision``.
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


def _no_packing(params: Params) -> Packed:
    raise NotImplementedError(
        "this optimizer was not built by from_rule() and cannot pack parameters"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
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
    """

    init: Callable[[Params], PyTree]
    update: Callable[[Grads, PyTree, Params], tuple[Params, PyTree]]
    name: str = "custom"
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rule: Rule | None = None
    pack: Callable[[Params], Packed] = _no_packing

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"


# ----------------------------------------------------------------------------- helpers


def rescale_clip(g: jax.Array, h: Hyper) -> jax.Array:
    """``clip(rescale_grad * g)`` with the optimizer's clip convention."""
    g = h.rescale_grad * g if h.rescale_grad != 1.0 else g
    return g if h.clip is None else jnp.clip(g, -h.clip, h.clip)


def unfused(x: jax.Array) -> jax.Array:
    """``x``, rounded to its dtype before the next operation (no FMA contraction).

    The select hides the product from LLVM's contraction into a fused multiply-add
    (``lax.optimization_barrier`` and ``reduce_precision`` are optimised away); the
    value is unchanged, NaN included. The base also applies it to every new
    parameter: XLA on CPU runs an elementwise op that is fused with nothing (such as
    SGD's ``w + m'``, where ``m'`` is itself an output) ~4x slower than a fusion.
    """
    # lax.select, not jnp.where: no nested jit to trace per leaf shape (same program)
    return jax.lax.select(x == x, x, jnp.full(jnp.shape(x), jnp.nan, jnp.result_type(x)))


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


def check_range(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    interval = (
        ("(" if lo_open else "[")
        + ("-inf" if lo is None else repr(lo))
        + ", "
        + ("inf" if hi is None else repr(hi))
        + (")" if hi_open else "]")
    )
    try:
        ok = math.isfinite(value)
    except OverflowError:  # an int beyond float range
        ok = False
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


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
        check_range("learning_rate", learning_rate, lo=0.0)
        learning_rate = float(learning_rate)
    if lr_scheduler is None:
        rate = 0.01 if learning_rate is None else learning_rate
        return rate, rate
    if not callable(lr_scheduler):
        raise TypeError(f"lr_scheduler must be callable, got {lr_scheduler!r}")
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
    if clip_gradient is None:
        return None
    check_range("clip_gradient", clip_gradient)
    c = float(clip_gradient)
    if mode == "fused":  # `if self.clip_gradient:` and the op clips only when >= 0
        return c if c > 0 else None
    if c < 0:
        raise ValueError(
            f"clip_gradient must be >= 0 (or None), got {clip_gradient!r}: MXNet's "
            "NDArray optimizers would clip to the inverted range [-c, c]"
        )
    return c


def _mults(name: str, mult: Mapping[str, float] | None) -> dict[str, float]:
    if mult is None:
        return {}
    if not isinstance(mult, Mapping):
        raise TypeError(f"{name} must be a dict {{leaf name: multiplier}}, got {mult!r}")
    out = {}
    for k, v in mult.items():
        if not isinstance(k, str):
            raise TypeError(f"{name} keys must be leaf names (str), got {k!r}")
        check_range(f"{name}[{k!r}]", v)
        out[k] = float(v)
    return out


def _config(rule: Rule, learning_rate: float | Schedule | None, c: Common) -> _Config:
    rate, _ = resolve_learning_rate(learning_rate, c.get("lr_scheduler"))
    wd = c.get("wd", 0.0)
    check_range("wd", wd, lo=0.0)
    rescale_grad = c.get("rescale_grad", 1.0)
    check_range("rescale_grad", rescale_grad)
    begin = c.get("begin_num_update", 0)
    if isinstance(begin, bool) or not isinstance(begin, int) or not 0 <= begin < 2**31 - 1:
        raise ValueError(
            f"begin_num_update must be an int in [0, 2**31 - 1), got {begin!r}"
        )
    for flag in ("multi_precision", "wd_by_name", "skip_nonfinite", "multi_tensor"):
        if not isinstance(c.get(flag, False), bool):
            raise TypeError(f"{flag} must be a bool, got {c.get(flag)!r}")
    return _Config(
        rate=rate,
        wd=float(wd),
        rescale_grad=float(rescale_grad),
        clip=_effective_clip(c.get("clip_gradient"), rule.clip_mode),
        begin_num_update=begin,
        multi_precision=c.get("multi_precision", False),
        lr_mult=_mults("lr_mult", c.get("lr_mult")),
        wd_mult=_mults("wd_mult", c.get("wd_mult")),
        wd_by_name=c.get("wd_by_name", False),
        skip_nonfinite=c.get("skip_nonfinite", False),
        multi_tensor=c.get("multi_tensor", False),
    )


class _Leaf(NamedTuple):
    """Static facts about one leaf, derived at trace time."""

    name: str
    dtype: jnp.dtype
    compute: jnp.dtype  # dtype the kernel runs in
    master: bool  # a float32 master copy is kept
    lr_mult: float
    wd_mult: float


def _leaf_info(rule: Rule, cfg: _Config, names: list[str], leaves: list) -> list[_Leaf]:
    for kind, mult in (("lr_mult", cfg.lr_mult), ("wd_mult", cfg.wd_mult)):
        unknown = sorted(set(mult) - set(names))
        if unknown:
            raise ValueError(
                f"{kind} names {unknown} match no parameter; parameters are {names}"
            )
    out = []
    for name, leaf in zip(names, leaves):
        dtype = jnp.dtype(leaf.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"parameter {name!r} has dtype {dtype}; expected a float")
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


def _flatten_named(params: Params, what: str) -> tuple[list[str], list, Any]:
    if params is None:
        raise ValueError(f"{what} is None: mxjax optimizers need the parameters")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    return [path_name(p) for p, _ in flat], [x for _, x in flat], treedef


def _slot_dtype(rule: Rule, info: _Leaf) -> jnp.dtype:
    return jnp.dtype(jnp.float32) if rule.state_dtype == "float32" else info.compute


def _init_leaf(
    rule: Rule, info: _Leaf, w: jax.Array | jax.ShapeDtypeStruct
) -> tuple[jax.Array, ...]:
    """A leaf's initial slots. ``w`` may be a ``ShapeDtypeStruct`` when the slots do not
    depend on the weight's values (zeros, no master copy): see :func:`needs_values`."""
    if not needs_values(rule, info):
        return tuple(jnp.zeros(jnp.shape(w), _slot_dtype(rule, info)) for _ in rule.slots)
    w = jnp.asarray(w)
    wc = w.astype(info.compute)
    if rule.init_slots is not None:
        # Fresh buffers: a slot may start as the weight itself (DCASGD), and params and
        # state are donated together.
        slots = tuple(jnp.array(x, copy=True) for x in rule.init_slots(wc))
    else:
        slots = tuple(jnp.zeros(w.shape, _slot_dtype(rule, info)) for _ in rule.slots)
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
        if jnp.result_type(g) != jnp.result_type(w):
            raise TypeError(
                f"gradient of parameter {name!r} has dtype {jnp.result_type(g)}, the "
                f"parameter has dtype {jnp.result_type(w)}"
            )
    return g_flat


def _slots_per_leaf(treedef: Any, slots: PyTree) -> list:
    if type(slots).__name__ == "MultiSlots":
        raise ValueError(
            "state.slots is a multi-tensor state (from init() of an optimizer created "
            "with multi_tensor=True); this optimizer does not fit it: it keeps per-leaf "
            "slots (multi_tensor=False, or a rule that is not elementwise)"
        )
    try:
        return treedef.flatten_up_to(slots)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "state.slots does not match the params' tree: was the state made by "
            f"init() on other parameters? ({str(e)[:300]})"
        ) from None


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


def _schedule(rate: float | Schedule, num_update: jax.Array) -> jax.Array:
    if callable(rate):
        return jnp.asarray(rate(num_update), jnp.float32)
    return jnp.asarray(rate, jnp.float32)


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
    scalars: dict | None = None,
) -> tuple[jax.Array, Slots]:
    """One leaf (or one multi-tensor group) through MXNet's preamble and the kernel.

    ``w`` may be ``None`` under a master copy (the last slot). Returns the new weight in
    the leaf's dtype and the new slots (master copy last). ``scalars``, shared by the
    leaves of one step, keeps each distinct (lr_mult, wd_mult, dtype)'s rates, so they
    are traced once per step rather than once per leaf.
    """
    slots = tuple(slots)
    if info.master:
        *rest, w_c = slots
        slots = tuple(rest)
    else:
        w_c = w.astype(info.compute)
    g_c = g.astype(info.compute)
    decay = cfg.wd * info.wd_mult != 0.0
    key = (info.lr_mult, info.wd_mult, info.compute)
    if scalars is None or key not in scalars:
        rates = (
            (lr * info.lr_mult if info.lr_mult != 1.0 else lr).astype(info.compute),
            jnp.asarray(cfg.wd * info.wd_mult, info.compute),
        )
        if scalars is not None:
            scalars[key] = rates
    lr_leaf, wd_leaf = rates if scalars is None else scalars[key]
    h = Hyper(
        lr=lr_leaf,
        wd=wd_leaf,
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
    slots_new = tuple(slots_new)
    if info.master:
        slots_new = (*slots_new, w_new)
    return unfused(w_new).astype(info.dtype), slots_new


class _PerLeaf:
    """The reference state layout: each leaf's slots, in the leaf's shape."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg

    def init(self, infos: list[_Leaf], leaves: list, treedef: Any) -> PyTree:
        slots = [_init_leaf(self.rule, i, w) for i, w in zip(infos, leaves)]
        return jax.tree_util.tree_unflatten(treedef, slots)

    def fits(self, infos: list[_Leaf], layout: Layout) -> bool:
        """Packed parameters never fit per-leaf slots: they are unpacked to update."""
        return False

    def check(self, infos: list[_Leaf], leaves: list, treedef: Any, slots: PyTree) -> None:
        for info, w, s in zip(infos, leaves, _slots_per_leaf(treedef, slots)):
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
        new_params, new_slots, scalars = [], [], {}
        per_leaf = _slots_per_leaf(treedef, slots)
        n = len(p_leaves)
        for j, (info, w, g, s) in enumerate(zip(infos, p_leaves, g_leaves, per_leaf)):
            w_new, s_new = apply_rule(
                self.rule, self.cfg, info, w, g, s, index=j, num_leaves=n,
                scalars=scalars, **kw,
            )
            new_params.append(w_new)
            new_slots.append(s_new)
        return new_params, jax.tree_util.tree_unflatten(treedef, new_slots)


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

    flat = rule.elementwise or rule.per_leaf_scalars
    layout = _multi_layout(rule, cfg) if cfg.multi_tensor and flat else (
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
            new_bufs, new_slots = layout.step_packed(
                infos, lay, params.buffers, grads.buffers, state.slots, **kw
            )
            new_params = Packed(new_bufs, lay)
        else:
            new_leaves, new_slots = layout.step(
                infos, p_leaves, g_leaves, treedef, state.slots, **kw
            )
            new_params = jax.tree_util.tree_unflatten(treedef, new_leaves)
        new_state = OptState(count=t, slots=new_slots, extra=new_extra, skipped=state.skipped)
        if cfg.skip_nonfinite:
            ok = _all_finite(g_leaves)
            keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
            new_params = jax.tree.map(keep, new_params, params)
            new_state = jax.tree.map(keep, new_state, state)
            new_state = new_state._replace(
                skipped=state.skipped + (~ok).astype(jnp.int32)
            )
        return new_params, new_state

    hp = dict(hyperparams or {})
    if learning_rate is not None:
        hp.setdefault("learning_rate", learning_rate)
    hp.update(common)
    return Optimizer(
        init=init, update=update, name=name, hyperparams=hp, rule=rule, pack=pack
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
