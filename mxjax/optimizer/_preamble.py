"""MXNet's shared preamble: the learning rate and schedule, weight decay, multipliers,
rescale and clip, the per-leaf facts, the trace-time checks of trees, and one leaf
through the preamble and its kernel (:func:`apply_rule`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from .. import _validate
from .._names import collisions, describe_collisions, path_name
from .._typing import Grads, Params, Schedule
from .._validate import real as check_range  # re-exported for the optimizers
from ._contract import (
    COMMON_DEFAULTS,
    LOW_PRECISION,
    Common,
    Hyper,
    OptState,
    Rule,
    Slots,
)
from ._kernel_math import rescale_clip
from ._learning_rate import resolve_learning_rate
from ._rounding import unfused


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
    multi_tensor: bool | Literal["auto"]

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
    for flag in ("multi_precision", "wd_by_name", "skip_nonfinite"):
        _validate.flag(flag, c[flag])
    mt = c["multi_tensor"]
    if not isinstance(mt, bool) and not (isinstance(mt, str) and mt == "auto"):
        _validate.fail("multi_tensor", 'True, False or "auto"', mt, "", TypeError)
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

def _leaf_info(
    rule: Rule, cfg: _Config, names: list[str], leaves: list, stacklevel: int = 4
) -> list[_Leaf]:
    """Each leaf's facts. ``stacklevel``: of the ``wd_by_name`` warning, as
    ``warnings.warn`` counts it from :func:`_check_names` (4: the caller's caller)."""
    _check_names(rule, cfg, names, stacklevel)
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

def _check_names(rule: Rule, cfg: _Config, names: list[str], stacklevel: int) -> None:
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
                stacklevel=stacklevel,
            )

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
    for info, g in zip(infos, g_leaves, strict=True):
        g = jnp.asarray(g)
        out.append(g if g.dtype in (info.dtype, info.compute) else g.astype(info.compute))
    return out

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
        w_c = jnp.asarray(w).astype(info.compute)
    g_c = jnp.asarray(g).astype(info.compute)
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
