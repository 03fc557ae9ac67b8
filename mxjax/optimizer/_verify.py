r"""Which multi-tensor path a rule may take, proven at trace time.

Under ``multi_tensor=True`` a group's leaves share flat buffers, and a step of the group
runs one of three ways (:mod:`mxjax.optimizer._multi`):

* ``"kernel"``: the CPU custom call runs the rule's program over every leaf
  (:mod:`mxjax.optimizer._fused`);
* ``"concat"``: XLA runs the rule once on the concatenated leaves;
* ``"slices"``: XLA runs the rule leaf by leaf, on slices of the flat state, each with
  its own shape, name and index: the per-leaf update itself, always right.

The first two are right only for rules that compute every element of a leaf the same
way, whatever the leaf. :func:`verify` proves it from the rule's jaxprs: it traces the
update (MXNet's preamble and the kernel) on leaves of *symbolic* shape (``(d0,)``,
``(d0, d1)``, ...), at rank 1 and at every other rank the group holds (at least two
ranks; rank 0 concretely), with ``h.name`` a probe that refuses to be read and
``h.index`` a traced int32, and requires

* every operation on a leaf-shaped value to be elementwise (:data:`ELEMENTWISE`: a
  whitelist), on operands of the leaf's shape or scalars; a reduction to be over every
  axis of the leaf (a *per-leaf scalar*); nothing else to have a leaf-dependent shape
  (no ``iota``, random draws, slices, transposes, ...);
* no use of the leaf's size (a symbolic dimension may not become a value), shape (no
  comparison of a dimension, which JAX would answer without knowing it) or rank (the
  traces of every rank must be the same program: the same operations, parameters,
  literals and constants, the leaf's shape aside);
* no read of ``h.name``; ``h.index`` only in a rule declaring ``per_leaf_scalars``.

Anything else, an exception raised while tracing included, makes the group run its
slices. The verdict is cached per group signature, so a step's compile time does not
grow. A rule that declares ``elementwise=True`` or ``per_leaf_scalars=True`` and is
refuted gets a ``ValueError`` naming the reason; a rule that declares nothing
(``elementwise=None``) runs on its slices, and the user is told once per rule with a
:class:`FastPathFallbackWarning`, as when the custom call cannot translate a program
(the primitive is named).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import export
from jax.extend import core as jcore

from .. import _kernels
from ._contract import Rule
from ._fused import Program, compile_group
from ._preamble import _Config, _Leaf, apply_rule
from ._probes import NameProbe, NameRead, read_probe

Path = Literal["kernel", "concat", "slices"]


class FastPathFallbackWarning(UserWarning):
    """A multi-tensor group runs on a slower path than its rule asked for (once per
    rule): the message names the reason (an untranslatable primitive, a use of the
    leaf's shape or name, ...)."""


ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh bessel_i0e bessel_i1e
    bitcast_convert_type cbrt ceil clamp clz complex conj convert_element_type copy
    copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma
    igamma_grad_a igammac imag integer_pow is_finite le lgamma log log1p logistic lt max
    min mul ne neg nextafter not or polygamma population_count pow random_gamma_grad
    real reduce_precision regularized_incomplete_beta rem round rsqrt select_n
    shift_left shift_right_arithmetic shift_right_logical sign sin sinh sqrt square
    stop_gradient sub tan tanh xor zeta""".split()
)
"""Primitives that compute each element of their output from the same element of their
operands alone (scalars broadcast)."""

REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or".split()
)
_RESHAPES = frozenset("broadcast_in_dim reshape squeeze copy copy_p".split())
_CALLS = frozenset(
    "pjit jit closed_call core_call custom_jvp_call custom_vjp_call remat checkpoint".split()
)
_DIM = type(export.symbolic_shape("a")[0])
_INCONCLUSIVE = getattr(jax.errors, "InconclusiveDimensionOperation", ())  # jax >= 0.4.31

ELEMENTWISE_KIND, SCALARS_KIND, PER_LEAF_KIND = 0, 1, 2


class _Refuted(Exception):
    """The rule is not the same program on every leaf; the message says why."""


class _ShapeWatch(threading.local):
    """Whether this thread is verifying, and what of the leaf's shape a rule compared."""

    active = False
    read = ""


_WATCH = _ShapeWatch()
_JAX_DIR = os.path.dirname(jax.__file__) + os.sep


def _watched(compare: Any, unproven: bool, symbol: str) -> Any:
    """``compare`` (a symbolic dimension's ``==`` or ``!=``), refusing, while this
    thread verifies, an answer that a rule (code outside JAX) got without a proof: JAX
    answers ``a == 3`` with ``False`` and ``a != 3`` with ``True`` for a symbolic ``a``,
    which a real leaf may contradict. (Order comparisons raise by themselves.)"""

    def method(self: Any, other: Any) -> bool:
        result = compare(self, other)
        if (
            _WATCH.active
            and result is unproven
            and not sys._getframe(1).f_code.co_filename.startswith(_JAX_DIR)
        ):
            _WATCH.read = f"{self} {symbol} {other}"
            raise _Refuted(f"it compares the leaf's shape or size ({_WATCH.read})")
        return result

    return method


@functools.cache
def _watch_dimensions() -> None:
    """Wraps the symbolic dimensions' ``==`` and ``!=`` (once, at the first
    verification; outside one they only answer as before)."""
    _DIM.__eq__ = _watched(_DIM.__eq__, False, "==")  # type: ignore[method-assign]
    _DIM.__ne__ = _watched(_DIM.__ne__, True, "!=")  # type: ignore[method-assign]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What :func:`verify` proved about a rule on one group.

    Attributes:
      kind: ``ELEMENTWISE_KIND`` (every element on its own), ``SCALARS_KIND`` (also
        sums over the whole leaf or ``h.index``) or ``PER_LEAF_KIND`` (neither).
      reason: why it is not elementwise ("" if it is).
      jaxpr: the rank-1 trace, on a leaf of symbolic shape ``(d0,)`` (``None`` for
        ``PER_LEAF_KIND``): the custom call's program is translated from it.
    """

    kind: int
    reason: str
    jaxpr: Any = None


@dataclasses.dataclass
class _Var:
    ref: Any  # the canonical reference of the value in the signature
    leaf: bool  # depends on the leaf (its elements, or its shape)
    index: bool  # depends on h.index


class _Trace:
    """Walks one trace (inlining calls): checks it and writes its canonical signature."""

    def __init__(self, shape: tuple):
        self.shape = shape  # the leaf's (symbolic) shape
        self.sig: list[tuple] = []
        self.reduces = ""  # the first reduction's primitive, if any

    def symbolic(self, x: Any) -> bool:
        if isinstance(x, _DIM):
            return True
        if isinstance(x, (tuple, list)):
            return any(self.symbolic(y) for y in x)
        return False

    def run(self, jaxpr: Any, consts: Sequence, args: Sequence[_Var]) -> list[_Var]:
        env: dict[Any, _Var] = {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v] = _Var(self._const(c), False, False)
        env.update(zip(jaxpr.invars, args))

        def read(v: Any) -> _Var:
            if isinstance(v, jcore.Literal):
                return _Var(self._const(v.val), False, False)
            return env[v]

        for eqn in jaxpr.eqns:
            outs = self._eqn(eqn, [read(v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    def _const(self, value: Any) -> tuple:
        if isinstance(value, jax.core.Tracer):  # a value of the enclosing trace
            return ("tracer", id(value))
        x = np.asarray(value)
        return ("const", str(x.dtype), x.shape, x.tobytes())

    def _eqn(self, eqn: Any, ins: list[_Var]) -> list[_Var]:
        name = eqn.primitive.name
        in_shapes = [v.aval.shape for v in eqn.invars]
        out_shapes = [v.aval.shape for v in eqn.outvars]
        leaf = any(x.leaf for x in ins) or self.symbolic([*in_shapes, *out_shapes])
        index = any(x.index for x in ins)
        if name in _CALLS:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            if isinstance(inner, jcore.ClosedJaxpr):
                return self.run(inner.jaxpr, inner.consts, ins)
            if inner is not None:
                return self.run(inner, (), ins)
        if name in _RESHAPES and (
            in_shapes[0] == out_shapes[0]
            or (_ones(in_shapes[0]) and (_ones(out_shapes[0]) or out_shapes[0] == self.shape))
        ):
            return [ins[0]]  # the same value, spread over the leaf or not
        if name == "optimization_barrier":
            return list(ins)
        params: Any = eqn.params
        if leaf:
            same = lambda s: _ones(s) or s == self.shape  # noqa: E731
            if name in REDUCTIONS:
                axes = tuple(sorted(eqn.params["axes"]))
                if in_shapes[0] != self.shape or axes != tuple(range(len(self.shape))):
                    raise _Refuted(
                        f"it reduces over part of the leaf ({name} over axes {axes} of "
                        f"a {len(self.shape)}-D leaf)"
                    )
                self.reduces = self.reduces or name
                params = {k: v for k, v in eqn.params.items() if k != "axes"}
            elif name not in ELEMENTWISE:
                raise _Refuted(f"it applies {name} to the leaf, which is not elementwise")
            elif not all(map(same, in_shapes + out_shapes)) or (
                self.shape in in_shapes and out_shapes[0] != self.shape
            ):
                raise _Refuted(f"its {name} changes the leaf's shape")
        if self.symbolic(list(params.values())):
            raise _Refuted(f"it uses the leaf's shape or size as a value ({name})")
        k = len(self.sig)
        canon = tuple(sorted((p, repr(v)) for p, v in params.items()))
        dtypes = tuple(str(v.aval.dtype) for v in eqn.outvars)
        self.sig.append((name, canon, tuple(x.ref for x in ins), dtypes))
        return [_Var(("eqn", k, i), leaf, index) for i in range(len(eqn.outvars))]


def _ones(shape: tuple) -> bool:
    """Whether ``shape`` holds one element whatever the leaf (``()``, ``(1, 1)``, ...):
    a value of it is a scalar, of the leaf (a reduction kept its dimensions) or not."""
    return all(isinstance(d, int) and d == 1 for d in shape)


def _spec(x: Any) -> Any:
    return jax.api_util.shaped_abstractify(x)


def _trace(
    rule: Rule,
    cfg: _Config,
    info: _Leaf,
    slot_dtypes: Sequence[Any],
    rank: int,
    kw: dict,
    num_leaves: int,
) -> tuple[Any, list[tuple], str, bool]:
    """One trace: (closed jaxpr, signature, its first reduction, uses h.index)."""
    _watch_dimensions()
    names = ", ".join(f"d{i}" for i in range(rank))
    shape = tuple(export.symbolic_shape(names)) if rank else ()
    leaf = lambda dt: jax.ShapeDtypeStruct(shape, dt)  # noqa: E731
    probe = info._replace(name=NameProbe())

    def update(w, g, slots, t, lr, extra, index):
        return apply_rule(
            rule, cfg, probe, w, g, slots, t=t, lr=lr, extra=extra, index=index,
            num_leaves=num_leaves,
        )

    w = None if info.master else leaf(info.dtype)
    slots = tuple(leaf(dt) for dt in slot_dtypes)
    index = jax.ShapeDtypeStruct((), jnp.int32)
    args = (w, leaf(info.dtype), slots, kw["t"], kw["lr"], kw["extra"], index)
    _WATCH.active, _WATCH.read = True, ""
    try:
        closed = jax.make_jaxpr(update)(*args)
    except NameRead:
        raise _Refuted("it reads h.name") from None
    except _Refuted:
        raise
    except _INCONCLUSIVE as e:
        raise _Refuted(f"it compares the leaf's shape or size ({_short(e)})") from None
    except jax.errors.TracerBoolConversionError as e:
        raise _Refuted(f"it uses a traced value in Python control flow ({_short(e)})")
    except Exception as e:  # noqa: BLE001 - whatever the rule raised, it is refused
        if read_probe(e):  # a C function wanted a str
            raise _Refuted("it reads h.name") from None
        raise _Refuted(
            f"tracing it on a leaf of symbolic shape {shape} raised "
            f"{type(e).__name__}: {_short(e)}"
        ) from None
    finally:
        _WATCH.active = False
    if _WATCH.read:  # compared, and the rule caught the error
        raise _Refuted(f"it compares the leaf's shape or size ({_WATCH.read})")
    t = _Trace(shape)
    n_w = 0 if info.master else 1
    n_args = len(closed.jaxpr.invars)
    args_v = [
        _Var(("in", i), i < n_w + 1 + len(slot_dtypes), i == n_args - 1)
        for i in range(n_args)
    ]
    try:
        outs = t.run(closed.jaxpr, closed.consts, args_v)
    except _Refuted:
        raise
    except Exception as e:  # noqa: BLE001 - a jaxpr this walk does not understand
        raise _Refuted(f"its jaxpr could not be checked ({type(e).__name__}: {_short(e)})")
    t.sig.append(("out", tuple(o.ref for o in outs)))
    return closed, t.sig, t.reduces, any(o.index for o in outs)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else "")[:200]


def verify(
    rule: Rule,
    cfg: _Config,
    info: _Leaf,
    slot_dtypes: Sequence[Any],
    ranks: Sequence[int],
    kw: dict,
    num_leaves: int,
) -> Verdict:
    """What ``rule`` is on every leaf of a group whose leaves have ``ranks``: traced
    at rank 1 and at every other rank of the group (at least one), each the same
    program as at rank 1."""
    try:
        closed, sig, reduces, index = _trace(rule, cfg, info, slot_dtypes, 1, kw, num_leaves)
        for rank in sorted(set(ranks) - {1}) or [2]:
            if _trace(rule, cfg, info, slot_dtypes, rank, kw, num_leaves)[1] != sig:
                raise _Refuted(
                    f"it depends on the leaf's rank (it computes something else on a "
                    f"{rank}-D leaf than on a 1-D leaf)"
                )
    except _Refuted as e:
        return Verdict(PER_LEAF_KIND, str(e))
    if reduces or index:
        what = f"reduces over the whole leaf ({reduces})" if reduces else "uses h.index"
        return Verdict(SCALARS_KIND, f"it {what}", closed)
    return Verdict(ELEMENTWISE_KIND, "", closed)


class _Once:
    """Rules already warned about, by identity (a rule is warned about once)."""

    def __init__(self) -> None:
        self._seen: dict[int, Any] = {}

    def first(self, rule: Rule) -> bool:
        key = id(rule)
        if key in self._seen:
            return False
        self._seen[key] = weakref.ref(rule, lambda _, key=key: self._seen.pop(key, None))
        return True


_WARNED = _Once()


def _warn(rule: Rule, message: str) -> None:
    if _WARNED.first(rule):
        warnings.warn(message, FastPathFallbackWarning, stacklevel=4)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A group's paths: its XLA path, and the trace the custom call may translate
    (``None``: the custom call may not run it)."""

    xla: Path
    jaxpr: Any


class Paths:
    """Chooses each group's path for one optimizer (``rule`` and ``cfg``); verdicts are
    cached per group signature."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.rule, self.cfg = rule, cfg
        self._cache: dict[tuple, Verdict] = {}

    def choose(
        self,
        info: _Leaf,
        flat: Sequence[jax.Array],
        shapes: Sequence[tuple[int, ...]],
        kw: dict,
        num_leaves: int,
    ) -> Choice:
        """The paths a group may take (told once per rule when it runs its slices and
        the rule did not ask for it).

        Raises:
          ValueError: the rule declares ``elementwise=True`` or ``per_leaf_scalars=True``
            and is not.
        """
        rule = self.rule
        slot_dtypes = tuple(jnp.result_type(x) for x in flat)  # master copy last
        ranks = tuple(sorted({len(s) for s in shapes}))
        key = (
            info._replace(name=""),
            slot_dtypes,
            ranks,
            jax.tree.structure(kw),
            tuple(_spec(x) for x in jax.tree.leaves(kw)),
            num_leaves,
        )
        v = self._cache.get(key) or verify(
            rule, self.cfg, info, slot_dtypes, ranks, kw, num_leaves
        )
        if v.jaxpr is None or not any(
            isinstance(c, jax.core.Tracer) for c in v.jaxpr.consts
        ):  # (a rule closing over a traced value is traced again in each step)
            self._cache[key] = v
        allowed = SCALARS_KIND if rule.per_leaf_scalars else ELEMENTWISE_KIND
        if v.kind > allowed:
            declared = (
                "per_leaf_scalars=True" if rule.per_leaf_scalars
                else "elementwise=True" if rule.elementwise else None
            )
            if declared:
                hint = "" if v.kind == PER_LEAF_KIND else ", or declare per_leaf_scalars=True"
                raise ValueError(
                    f"{_named(rule)} declares {declared}, but {v.reason}: under "
                    "multi_tensor=True it would not give what it gives leaf by leaf. "
                    f"Leave elementwise unset (None) to run it leaf by leaf{hint}"
                )
            hint = (
                " (declare Rule(..., per_leaf_scalars=True) to run it in the custom "
                "call)" if v.kind == SCALARS_KIND else ""
            )
            _warn(
                rule,
                f"multi_tensor=True: {_named(rule)} runs leaf by leaf (on slices of the "
                f"flat state), because {v.reason}{hint}",
            )
            return Choice("slices", None)
        return Choice("concat" if v.kind == ELEMENTWISE_KIND else "slices", v.jaxpr)

    def program(
        self, choice: Choice, info: _Leaf, members: Sequence[int], n_slots: int, kw: dict
    ) -> Program | None:
        """The custom call's program for a group :meth:`choose` allowed it, or ``None``
        where it cannot run it (told once per rule when the rule, not the platform, is
        the reason). Call this while tracing the step: it computes the uniforms."""
        if choice.jaxpr is None or not _kernels.available():
            return None
        if info.dtype != jnp.float32 or info.compute != jnp.float32:
            return None
        uniforms = jax.tree.leaves((kw["t"], kw["lr"], kw["extra"]))
        try:
            return compile_group(choice.jaxpr, n_slots, members, uniforms)
        except Exception as e:  # noqa: BLE001 - whatever failed, XLA runs the group
            _warn(
                self.rule,
                f"multi_tensor=True: {_named(self.rule)} runs through XLA, not mxjax's "
                f"CPU kernel, because the kernel cannot run {_short(e)}",
            )
            return None


def _named(rule: Rule) -> str:
    return f"Rule({getattr(rule.kernel, '__qualname__', repr(rule.kernel))})"
