r"""The multi-tensor custom call: a whole group of leaves updated by one kernel, in place.

XLA on CPU runs one kernel per output array and pays a few microseconds for each, so a
model with thousands of parameter tensors spends its optimizer step in dispatch. Under
``multi_tensor=True``, mxjax instead compiles the optimizer's per-leaf rule, *as traced
by JAX*, into a small program of float32 operations and hands it, with every leaf of a
group, to one XLA FFI custom call (``mxjax/_kernels/elementwise.cc``). The call runs the
program over blocks of each leaf on XLA's intra-op thread pool and writes the new
parameters and the group's flat slot buffers in place (they are aliased to its operands).

How a rule becomes a program: :mod:`mxjax.optimizer._verify` traces :func:`apply_rule`
(MXNet's preamble and the kernel) on a leaf of symbolic shape ``(d0,)`` and proves that
it is the same program on every leaf of the group; :func:`compile_group` translates that
trace. Every equation of the jaxpr whose inputs do not depend on a leaf (the learning
rate, bias corrections, ...) is evaluated by JAX as usual and becomes a *uniform*, an
entry of a small float32 vector passed to the call; every equation that does is
translated to one instruction of the program. Only IEEE-exact operations are translated
(``+ - * /``, sqrt, min/max, abs, sign, comparisons, select, integer powers as JAX
lowers them); each rounds to float32 on its own, as XLA does, so the results equal the
reference path's evaluated operation by operation (tested for every eligible optimizer).

Per-leaf scalars (``Rule.per_leaf_scalars``): a ``reduce_sum`` over the leaf becomes a
reduction into a per-leaf register, and what depends on it runs in a later *phase*
(:func:`_phases`); equations on ``h.index`` (traced as an int32) are evaluated by JAX for
every member with ``vmap`` and reach the call as a per-leaf table. A rule using anything
else (a transcendental function of a leaf, another dtype) makes :func:`compile_group`
raise :class:`Unsupported`, and runs on the XLA multi-tensor path instead.

The custom call exists for XLA's CPU backend only; elsewhere (and where the kernel
library was not built) the group runs on the XLA path, with the same state layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from .. import _kernels
from .._kernels import program
from ._packed import numels

CHUNK_LEAVES = 64
"""Leaves per custom call: XLA's compile time grows superlinearly with the number of
aliased operands of one instruction (2,000 leaves in one call: 35 s; in chunks: 1 s)."""

_OPS = program.OPCODE  # the encoding, described once (mxjax/_kernels/program.py)
_BINARY = {"add", "sub", "mul", "div", "max", "min", "and", "or"}
_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}
_UNARY = {"neg", "abs", "sign", "sqrt", "floor", "ceil", "is_finite", "not"}
_CALLS = {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "remat",
    "checkpoint",
}
_F32 = jnp.dtype(jnp.float32)
_BOOL = jnp.dtype(jnp.bool_)


class Unsupported(Exception):
    """The rule uses an operation the custom call does not implement."""


@dataclasses.dataclass(frozen=True)
class _Reg:
    """A value the program computes: a virtual register.

    ``kind`` is ``"elem"`` (one value per element of the leaf) or ``"leaf"`` (one per
    leaf: a reduction over the leaf, or computed from one); ``level`` is the first
    element phase that can read it (a reduction of a level-``e`` value has level
    ``e + 1``).
    """

    reg: int
    kind: str
    level: int


@dataclasses.dataclass(frozen=True)
class _Host:
    """A per-leaf value JAX computes before the call (from the leaf's index)."""

    values: jax.Array  # one entry per member of the group


class _Builder:
    """Translates the leaf-dependent equations of a jaxpr into instructions."""

    def __init__(self, n_slots: int, leaf: tuple):
        self.n_slots = n_slots
        self.leaf = leaf  # the (symbolic) shape of the traced leaf
        self.n_values = 2 + n_slots  # virtual registers: w, g, slots, then the rest
        # (kind "elem" | "reduce" | "scalar", level, op, dst, a, b, c)
        self.code: list[tuple[str, int, str, int, int, int, int]] = []
        self.uniforms: list[jax.Array] = []  # uniform values used by instructions
        self.uniform_reg: dict[int, int] = {}  # id(value) -> virtual register
        self.host: list[jax.Array] = []  # per-leaf columns
        self.host_reg: dict[int, int] = {}
        self.nan_regs: set[int] = set()  # uniforms that are the constant NaN
        self.bools: set[int] = set()  # registers holding a predicate (0.0 or 1.0)
        self._keep: list[Any] = []  # the values keyed by id, kept alive

    def new(self) -> int:
        self.n_values += 1
        return self.n_values - 1

    def operand(self, value: Any) -> tuple[int, str, int]:
        """(virtual register, kind, level) of an instruction operand."""
        if isinstance(value, _Reg):
            return value.reg, value.kind, value.level
        if isinstance(value, _Host):
            key = id(value)
            if key not in self.host_reg:
                self.host.append(value.values.astype(jnp.float32))
                self.host_reg[key] = self.new()
                self._keep.append(value)
            return self.host_reg[key], "host", 0
        key = id(value)
        if key not in self.uniform_reg:
            x = jnp.asarray(value)
            if x.size != 1 or x.dtype not in (_F32, _BOOL):
                raise Unsupported(f"uniform of shape {x.shape} and dtype {x.dtype}")
            self.uniforms.append(x.reshape(()).astype(jnp.float32))
            self.uniform_reg[key] = self.new()
            self._keep.append(value)
            if not isinstance(value, jax.core.Tracer) and np.isnan(
                np.asarray(value, np.float32)
            ):
                self.nan_regs.add(self.uniform_reg[key])
        return self.uniform_reg[key], "uniform", 0

    def emit(self, op: str, *args: Any) -> _Reg:
        ops = [self.operand(a) for a in args]
        level = max(lv for _, _, lv in ops)
        regs = [r for r, _, _ in ops]
        regs += regs[:1] * (3 - len(regs))  # unused operands repeat the first
        dst = self.new()
        if op in _COMPARE or op in ("and", "or", "not", "is_finite"):
            self.bools.add(dst)
        if any(k == "elem" for _, k, _ in ops):
            self.code.append(("elem", level, op, dst, *regs))
            return _Reg(dst, "elem", level)
        self.code.append(("scalar", level, op, dst, *regs))
        return _Reg(dst, "leaf", level)

    def reduce(self, x: _Reg) -> _Reg:
        dst = self.new()
        self.code.append(("reduce", x.level, "reduce_add", dst, x.reg, x.reg, x.reg))
        return _Reg(dst, "leaf", x.level + 1)


def _check_aval(b: _Builder, name: str, v: Any) -> None:
    aval = v.aval
    one = all(isinstance(d, int) and d == 1 for d in aval.shape)  # a scalar, or kept dims
    if not (one or aval.shape == b.leaf) or aval.dtype not in (_F32, _BOOL):
        raise Unsupported(f"{name} on a value of shape {aval.shape} and dtype {aval.dtype}")


def _integer_pow(b: _Builder, x: Any, y: int) -> Any:
    """``x ** y`` by the multiplications JAX's lowering of ``integer_pow`` uses."""
    if y == 0:
        return jnp.float32(1.0)
    recip, y = y < 0, abs(y)
    acc = None
    while y > 0:
        if y & 1:
            acc = x if acc is None else b.emit("mul", acc, x)
        y >>= 1
        if y > 0:
            x = b.emit("mul", x, x)
    return b.emit("div", jnp.float32(1.0), acc) if recip else acc


def _bind_host(eqn: Any, ins: list) -> list:
    """An equation on per-leaf host values: JAX computes it for every leaf (vmap)."""
    axes = tuple(0 if isinstance(x, _Host) else None for x in ins)
    args = [x.values if isinstance(x, _Host) else x for x in ins]
    fn = lambda *xs: eqn.primitive.bind(*xs, **eqn.params)  # noqa: E731
    outs = jax.vmap(fn, in_axes=axes)(*args)
    outs = outs if eqn.primitive.multiple_results else [outs]
    return [_Host(o) for o in outs]


def _walk(b: _Builder, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list:
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if not any(
            isinstance(x, (_Reg, _Host)) for x in ins
        ):  # uniform: JAX computes it
            if name in ("broadcast_in_dim", "reshape") and jnp.shape(ins[0]) == ():
                outs = ins  # a uniform spread over the leaf stays a scalar
            else:
                concrete = not any(isinstance(x, jax.core.Tracer) for x in ins)
                try:
                    if concrete and name == "convert_element_type":
                        # a constant stays a constant (the peephole reads it), without
                        # compiling anything
                        outs = np.asarray(ins[0], eqn.params["new_dtype"])
                    else:
                        outs = eqn.primitive.bind(*ins, **eqn.params)
                except (TypeError, ValueError) as e:  # a shape-dependent operation
                    raise Unsupported(name) from e
                outs = outs if eqn.primitive.multiple_results else [outs]
        elif name in _CALLS:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            if inner is None:
                raise Unsupported(name)
            if isinstance(inner, jcore.ClosedJaxpr):
                outs = _walk(b, inner.jaxpr, inner.consts, ins)
            else:
                outs = _walk(b, inner, (), ins)
        elif not any(isinstance(x, _Reg) for x in ins):  # per-leaf, from the index
            if name in ("broadcast_in_dim", "reshape") and eqn.outvars[0].aval.shape:
                outs = ins
            else:
                outs = _bind_host(eqn, ins)
        else:
            for v in (*eqn.invars, *eqn.outvars):
                _check_aval(b, name, v)
            outs = [_element(b, name, eqn, ins)]
        for var, val in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = val
    return [read(v) for v in jaxpr.outvars]


def _reciprocal(b: _Builder, x: Any) -> Any:
    """``1 / x`` for a divisor that is the same for the whole leaf."""
    if isinstance(x, _Host):
        return _Host(jnp.float32(1.0) / x.values)
    if isinstance(x, _Reg):
        return b.emit("div", jnp.float32(1.0), x)
    return jnp.float32(1.0) / x


def _as_xla_rewrites(b: _Builder, name: str, ins: list) -> Any:
    """XLA's algebraic rewrites that change IEEE results, made here too (found by
    tests/optimizer/test_fast_path_differential.py); ``None`` where none applies.

    * ``x * float(p)`` for a predicate ``p`` is ``select(p, x, 0)``: 0 even where
      ``x`` is ±Inf or NaN, +0 where ``x`` is negative;
    * ``x + 0.0`` is ``x``: -0 stays -0.
    """
    if name == "mul":
        for p, x in (ins, ins[::-1]):
            if isinstance(p, _Reg) and p.reg in b.bools:
                return b.emit("select", p, jnp.float32(0.0), x)
    if name == "add":
        for zero, x in (ins, ins[::-1]):
            if (
                isinstance(x, _Reg)
                and not isinstance(zero, (_Reg, _Host, jax.core.Tracer))
                and np.asarray(zero, np.float32).tobytes() == bytes(4)
            ):
                return x
    return None


def _element(b: _Builder, name: str, eqn: Any, ins: list) -> Any:
    """One equation on values the program computes."""
    elem = lambda x: isinstance(x, _Reg) and x.kind == "elem"  # noqa: E731
    if name == "div" and elem(ins[0]) and not elem(ins[1]):
        # XLA rewrites x / broadcast(s) as x * (1 / s); so does the program.
        return b.emit("mul", ins[0], _reciprocal(b, ins[1]))
    rewritten = _as_xla_rewrites(b, name, ins)
    if rewritten is not None:
        return rewritten
    if name in _BINARY or name in _COMPARE or name in _UNARY:
        return b.emit(name, *ins)
    if name == "reduce_sum":
        (x,) = ins
        if not elem(x) or tuple(eqn.params["axes"]) != (0,):
            raise Unsupported("reduce_sum of a scalar")
        return b.reduce(x)
    if name == "square":
        return b.emit("mul", ins[0], ins[0])
    if name == "integer_pow":
        return _integer_pow(b, ins[0], eqn.params["y"])
    if name == "select_n":
        if len(ins) != 3:
            raise Unsupported("select_n with more than two cases")
        return b.emit("select", *ins)
    if name == "clamp":  # clamp(lo, x, hi) = min(max(x, lo), hi)
        lo, x, hi = ins
        return b.emit("min", b.emit("max", x, lo), hi)
    if name == "convert_element_type":
        src, dst = eqn.invars[0].aval.dtype, jnp.dtype(eqn.params["new_dtype"])
        if dst == _BOOL and src == _F32:
            return b.emit("ne", ins[0], jnp.float32(0.0))
        return ins[0]  # float32 -> float32, bool -> float32 (stored as 0.0 / 1.0)
    if name in (
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "copy",
        "copy_p",
        "reduce_precision",
        "optimization_barrier",
    ):
        if name == "reduce_precision" and (
            eqn.params["exponent_bits"],
            eqn.params["mantissa_bits"],
        ) != (8, 23):
            raise Unsupported("reduce_precision below float32")
        return ins[0]
    raise Unsupported(name)


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled rule: the instruction stream and the step's uniform values."""

    code: np.ndarray  # int32, the layout elementwise.cc parses
    uniforms: jax.Array  # float32 vector
    per_leaf: jax.Array  # float32 [group members, columns]


def _peephole(b: _Builder, outs: list[int]) -> list[int]:
    """Fewer instructions, the same bits; returns the outputs' registers after it.

    * ``select(x == x, x, nan)`` (:func:`~mxjax.optimizer._base.unfused`, which only
      keeps XLA from contracting) is ``x``;
    * a product used once, then added or subtracted, becomes one instruction that
      still rounds twice (``a*b + c``, ``a*b - c``, ``c - a*b``).
    """
    defs = {ins[3]: ins for ins in b.code}
    uses: dict[int, int] = {}
    for ins in b.code:
        for r in set(ins[4:]):
            uses[r] = uses.get(r, 0) + 1
    for r in outs:
        uses[r] = uses.get(r, 0) + 1
    alias: dict[int, int] = {}
    code = []
    for kind, level, op, dst, x, y, z in b.code:
        x, y, z = (alias.get(r, r) for r in (x, y, z))
        if kind == "elem" and op == "select" and y in b.nan_regs and x in defs:
            cond = defs[x]
            if cond[2] == "eq" and cond[4] == cond[5] == z:
                alias[dst] = z
                continue
        if kind == "elem" and op in ("add", "sub"):
            for prod, other, fused in (
                (x, y, "muladd" if op == "add" else "mulsub"),
                (y, x, "muladd" if op == "add" else "submul"),
            ):
                m = defs.get(prod)
                if m and m[0] == "elem" and m[2] == "mul" and uses.get(prod) == 1:
                    code.append((kind, level, fused, dst, m[4], m[5], other))
                    break
            else:
                code.append((kind, level, op, dst, x, y, z))
            continue
        code.append((kind, level, op, dst, x, y, z))
    b.code = code
    return [alias.get(r, r) for r in outs]


def _closure(defs: dict[int, tuple], targets: Sequence[int], kinds: set[str]) -> set[int]:
    """The registers ``targets`` are computed from, through instructions of ``kinds``."""
    found: set[int] = set()
    stack = [r for r in targets if r in defs]
    while stack:
        r = stack.pop()
        if r in found:
            continue
        found.add(r)
        stack += [x for x in defs[r][4:] if x in defs and defs[x][0] in kinds]
    return found


def _phases(b: _Builder, outs: list[int]) -> list[tuple[bool, list[tuple]]]:
    """Split the instructions into phases; element values are recomputed where needed."""
    every = {ins[3]: ins for ins in b.code}
    need = _closure(every, outs, {"elem", "reduce", "scalar"})
    code = [ins for ins in b.code if ins[3] in need]
    defs = {ins[3]: ins for ins in code}
    last = max([ins[1] for ins in code] + [0])
    phases: list[tuple[bool, list[tuple]]] = []
    for level in range(last + 1):
        scalar = [ins for ins in code if ins[0] == "scalar" and ins[1] == level]
        if scalar:
            phases.append((True, scalar))
        targets = [ins[3] for ins in code if ins[0] == "reduce" and ins[1] == level]
        if level == last:
            targets += [r for r in outs if r in defs and defs[r][0] == "elem"]
        # the element instructions these targets need, recomputed at this level
        wanted = _closure(defs, targets, {"elem"})
        phases.append((False, [ins for ins in code if ins[3] in wanted]))
    return phases


def _direct(b: _Builder, code: list[tuple], outs: list[int]) -> list[int]:
    """Per output, 1 if the last phase may compute it straight into its destination:
    it is computed there, by or after the last read of the input whose memory it overwrites
    (w for w', each slot for its successor), and no output is an input's copy (those
    are staged before any output is written)."""
    fixed = 2 + b.n_slots
    if any(r < fixed for r in outs):
        return [0] * len(outs)
    defined = {ins[3]: i for i, ins in enumerate(code)}
    flags = []
    for o, r in enumerate(outs):
        source = 0 if o == 0 else 1 + o
        reads = [i for i, ins in enumerate(code) if source in ins[4:]]
        # (the defining instruction itself may read it: it reads each element before
        # writing it, at the same index)
        ok = (
            r in defined and defined[r] >= max(reads, default=-1) and outs.count(r) == 1
        )
        flags.append(int(ok))
    return flags


def _encode(b: _Builder, outs: list[int]) -> np.ndarray:
    """Register allocation (linear scan per phase) and the encoded program."""
    outs = _peephole(b, outs)
    fixed = 2 + b.n_slots
    phases = _phases(b, outs)
    per_leaf = sorted(
        {ins[3] for _, code in phases for ins in code if ins[0] in ("scalar", "reduce")}
    )
    phys: dict[int, int] = {r: r for r in range(fixed)}
    for vr in (*b.uniform_reg.values(), *b.host_reg.values(), *per_leaf):
        phys[vr] = len(phys)
    base = len(phys)
    n_regs = base
    body: list[int] = []
    for k, (scalar, code) in enumerate(phases):
        last_use: dict[int, int] = {}
        for i, ins in enumerate(code):
            for r in ins[4:]:
                last_use[r] = i
        keep = set(outs) if k == len(phases) - 1 else set()
        local = dict(phys)
        free: list[int] = []
        top = base
        body += [program.PHASE_SCALAR if scalar else program.PHASE_ELEMENT, len(code)]
        for i, (_, _, op, dst, x, y, z) in enumerate(code):
            srcs = [local.get(r, 0) for r in (x, y, z)]
            if dst not in local:
                # An output gets a register of its own: it may point at the destination
                # for the whole block.
                if free and dst not in keep:
                    local[dst] = free.pop()
                else:
                    local[dst], top = top, top + 1
            body += [_OPS[op], local[dst], *srcs]
            for r in {x, y, z}:  # freed after dst is chosen: no instruction in place
                if (
                    r in local
                    and r not in phys
                    and r not in keep
                    and last_use.get(r) == i
                ):
                    free.append(local.pop(r))
        n_regs = max(n_regs, top)
        if k == len(phases) - 1:
            out_phys = [local[r] for r in outs]
            direct = _direct(b, code, outs)
    header = [n_regs, b.n_slots, len(b.uniform_reg)]
    for i, vr in enumerate(b.uniform_reg.values()):
        header += [phys[vr], i]
    header.append(len(b.host_reg))
    for i, vr in enumerate(b.host_reg.values()):
        header += [phys[vr], i]
    header.append(len(per_leaf))
    header += [phys[vr] for vr in per_leaf]
    header += out_phys
    header += direct
    header.append(len(phases))
    return np.asarray(header + body, np.int32)


def compile_group(
    closed: Any, n_slots: int, members: Sequence[int], uniforms: Sequence[Any]
) -> Program:
    """The program of one group's update.

    ``closed`` is the update of one leaf as :func:`~mxjax.optimizer._verify.verify`
    traced and proved it (on a leaf of symbolic shape ``(d0,)``: weight, gradient,
    ``n_slots`` slots, then ``uniforms`` (the leaves of ``t``, ``lr`` and ``extra``)
    and ``h.index``). ``members`` are the group's leaf indices (tree order): JAX
    evaluates what the rule computes from ``h.index`` for every member before the call.
    Must be called while tracing the step: the uniform values are computed here.

    Raises:
      Unsupported: the custom call cannot run an operation (the message names it).
    """
    b = _Builder(n_slots, closed.jaxpr.invars[0].aval.shape)
    indices = _Host(jnp.asarray(np.asarray(members, np.int32)))
    args = [_Reg(r, "elem", 0) for r in range(2 + n_slots)]
    args += [*uniforms, indices]
    outs = _walk(b, closed.jaxpr, closed.consts, args)
    # An output that is the same over the leaf is a register filled with it.
    out_regs = [b.operand(o)[0] for o in outs]
    if len(out_regs) != 1 + n_slots:
        raise Unsupported(f"{len(out_regs)} outputs for {n_slots} slots")
    uniform_vec = jnp.stack(b.uniforms) if b.uniforms else jnp.zeros((1,), jnp.float32)
    host = (
        jnp.stack(b.host, axis=1)
        if b.host
        else jnp.zeros((len(members), 1), jnp.float32)
    )
    code = _encode(b, out_regs)
    _kernels.compile_loop(code)
    return Program(code, uniform_vec, host)


def _call(
    program: Program,
    rows: slice,
    ws: list,
    gs: list,
    slots: tuple,
    sizes: Sequence[int],
    slot_base: int,
    packed: bool,
) -> tuple[list, tuple]:
    k, s = len(ws), len(slots)
    call = jax.ffi.ffi_call(
        _kernels.TARGET,
        [jax.ShapeDtypeStruct(jnp.shape(w), jnp.float32) for w in ws]
        + [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in slots],
        input_output_aliases={
            **{2 + i: i for i in range(k)},
            **{2 + 2 * k + j: k + j for j in range(s)},
        },
        vmap_method="sequential",
    )
    out = call(
        program.uniforms,
        program.per_leaf[rows],
        *ws,
        *gs,
        *slots,
        program=program.code,
        n_leaves=np.int64(len(sizes)),
        slot_base=np.int64(slot_base),
        sizes=np.asarray(sizes, np.int64),
        packed=np.int64(packed),
    )
    return list(out[:k]), tuple(out[k:])


def run_group(
    program: Program, weights: list, grads: list, slots: Sequence[jax.Array]
) -> tuple[list, tuple[jax.Array, ...]]:
    """One group's step through the custom call; returns new weights and slot buffers."""
    slots = tuple(slots)
    new_w: list = []
    base = 0
    for lo in range(0, len(weights), CHUNK_LEAVES):
        ws, gs = weights[lo : lo + CHUNK_LEAVES], grads[lo : lo + CHUNK_LEAVES]
        sizes = numels(jnp.shape(w) for w in ws)
        out, slots = _call(
            program, slice(lo, lo + len(ws)), ws, gs, slots, sizes, base, False
        )
        new_w += out
        base += sum(sizes)
    return new_w, slots


def run_packed(
    program: Program,
    weights: jax.Array,
    grads: jax.Array,
    slots: Sequence[jax.Array],
    sizes: Sequence[int],
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """One group's step through one custom call, its leaves (of ``sizes``) lying back to
    back in ``weights`` and ``grads``; returns the new weights and slot buffers.

    A program with nothing per leaf (no per-leaf table, no per-leaf registers) computes
    each element from its own inputs alone: it runs on the buffer as one leaf, with no
    per-leaf bookkeeping and the same results."""
    rows = slice(None)
    if _leaf_independent(program.code):
        sizes, rows = [sum(sizes)], slice(0, 1)
    out, slots = _call(program, rows, [weights], [grads], tuple(slots), sizes, 0, True)
    return out[0], slots


def _leaf_independent(code: np.ndarray) -> bool:
    """Whether a program (:func:`_encode`'s layout) has no per-leaf inputs or values."""
    i = 3 + 2 * int(code[2])  # after the uniforms
    n_host = int(code[i])
    return n_host == 0 and int(code[i + 1 + 2 * n_host]) == 0
