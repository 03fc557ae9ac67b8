r"""The multi-tensor custom call: a whole group of leaves updated by one kernel, in place.

XLA on CPU runs one kernel per output array and pays a few microseconds for each, so a
model with thousands of parameter tensors spends its optimizer step in dispatch. Under
``multi_tensor=True``, mxjax instead compiles the optimizer's per-leaf rule, *as traced
by JAX*, into a small program of float32 operations and hands it, with every leaf of a
group, to one XLA FFI custom call (``mxjax/_kernels/elementwise.cc``). The call runs the
program over blocks of each leaf on XLA's intra-op thread pool and writes the new
parameters and the group's flat slot buffers in place (they are aliased to its operands).

How a rule becomes a program: :func:`compile_group` traces :func:`apply_rule` (MXNet's
preamble and the kernel) on stand-in leaves of shape ``(7,)``. Every equation of the
jaxpr whose inputs do not depend on a leaf (the learning rate, bias corrections, ...) is
evaluated by JAX as usual and becomes a *uniform*, an entry of a small float32 vector
passed to the call; every equation that does is translated to one instruction of the
program. Only IEEE-exact operations are translated (``+ - * /``, sqrt, min/max, abs,
sign, comparisons, select, integer powers as JAX lowers them); each rounds to float32 on
its own, as XLA does, so the results equal the reference path's (tested for every
eligible optimizer). A rule using anything else (a transcendental function of a leaf, a
reduction, another dtype) gets ``None`` from :func:`compile_group` and runs on the XLA
multi-tensor path instead.

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
from ._base import Rule, _Config, _Leaf, apply_rule

STANDIN = 7
"""The length of the stand-in leaves the rule is traced on."""

CHUNK_LEAVES = 64
"""Leaves per custom call: XLA's compile time grows superlinearly with the number of
aliased operands of one instruction (2,000 leaves in one call: 35 s; in chunks: 1 s)."""

_OPS = {
    name: i
    for i, name in enumerate(
        "add sub mul div neg max min abs sign sqrt eq ne lt le gt ge select and or not "
        "copy is_finite floor ceil".split()
    )
}
_BINARY = {"add", "sub", "mul", "div", "max", "min", "and", "or"}
_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}
_UNARY = {"neg", "abs", "sign", "sqrt", "floor", "ceil", "is_finite", "not"}
_CALLS = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
          "remat", "checkpoint"}
_F32 = jnp.dtype(jnp.float32)
_BOOL = jnp.dtype(jnp.bool_)


class Unsupported(Exception):
    """The rule uses an operation the custom call does not implement."""


@dataclasses.dataclass
class _Elem:
    """A value that depends on the leaf: a virtual register."""

    reg: int


class _Builder:
    """Translates the leaf-dependent equations of a jaxpr into instructions."""

    def __init__(self, n_slots: int):
        self.n_slots = n_slots
        self.n_values = 2 + n_slots  # virtual registers: w, g, slots, then temporaries
        self.code: list[tuple[str, int, int, int, int]] = []
        self.uniforms: list[jax.Array] = []  # uniform values used by instructions
        self.uniform_reg: dict[int, int] = {}  # id(value) -> virtual register
        self._keep: list[Any] = []  # the values keyed by id, kept alive

    def uniform(self, value: Any) -> int:
        key = id(value)
        if key not in self.uniform_reg:
            x = jnp.asarray(value)
            if x.shape != () or x.dtype not in (_F32, _BOOL):
                raise Unsupported(f"uniform of shape {x.shape} and dtype {x.dtype}")
            self.uniforms.append(x.astype(jnp.float32))
            self._keep.append(value)
            self.uniform_reg[key] = self.new()
        return self.uniform_reg[key]

    def new(self) -> int:
        self.n_values += 1
        return self.n_values - 1

    def reg(self, v: Any) -> int:
        return v.reg if isinstance(v, _Elem) else self.uniform(v)

    def emit(self, op: str, *args: Any) -> _Elem:
        regs = [self.reg(a) for a in args] + [0] * (3 - len(args))
        dst = self.new()
        self.code.append((op, dst, *regs))
        return _Elem(dst)


def _check_aval(v: Any) -> None:
    aval = v.aval
    if aval.shape not in ((), (STANDIN,)) or aval.dtype not in (_F32, _BOOL):
        raise Unsupported(f"value of shape {aval.shape} and dtype {aval.dtype}")


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
        if not any(isinstance(x, _Elem) for x in ins):  # uniform: JAX computes it
            if name in ("broadcast_in_dim", "reshape") and jnp.shape(ins[0]) == ():
                outs = ins  # a uniform spread over the leaf stays a scalar
            else:
                try:
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
        else:
            for v in (*eqn.invars, *eqn.outvars):
                _check_aval(v)
            outs = [_element(b, name, eqn, ins)]
        for var, val in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = val
    return [read(v) for v in jaxpr.outvars]


def _element(b: _Builder, name: str, eqn: Any, ins: list) -> Any:
    """One leaf-dependent equation."""
    if name == "div" and not isinstance(ins[1], _Elem):
        # XLA rewrites x / broadcast(s) as x * (1 / s); so does the program.
        return b.emit("mul", ins[0], jnp.float32(1.0) / ins[1])
    if name in _BINARY or name in _COMPARE:
        return b.emit(name, *ins)
    if name in _UNARY:
        return b.emit(name, *ins)
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
    if name in ("broadcast_in_dim", "reshape", "squeeze", "expand_dims", "copy",
                "copy_p", "reduce_precision", "optimization_barrier"):
        if name == "reduce_precision" and (
            eqn.params["exponent_bits"], eqn.params["mantissa_bits"]
        ) != (8, 23):
            raise Unsupported("reduce_precision below float32")
        return ins[0]
    raise Unsupported(name)


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled rule: the instruction stream and the step's uniform values."""

    code: np.ndarray  # int32, the layout elementwise.cc parses
    uniforms: jax.Array  # float32 vector


def _allocate(b: _Builder, outs: list[int]) -> np.ndarray:
    """Linear-scan register allocation; returns the encoded program."""
    fixed = 2 + b.n_slots
    last: dict[int, int] = {}
    for k, (_, dst, x, y, z) in enumerate(b.code):
        for r in (x, y, z):
            last[r] = k
    pinned = set(b.uniform_reg.values()) | set(outs) | set(range(fixed))
    phys: dict[int, int] = {r: r for r in range(fixed)}
    for vr in b.uniform_reg.values():
        phys[vr] = len(phys)
    n_regs = len(phys)
    free: list[int] = []
    code = []
    for k, (op, dst, x, y, z) in enumerate(b.code):
        srcs = [phys[r] if r in phys else 0 for r in (x, y, z)]
        if free:
            phys[dst] = free.pop()
        else:
            phys[dst] = n_regs
            n_regs += 1
        code.append((_OPS[op], phys[dst], *srcs))
        for r in {x, y, z}:  # freed after dst is chosen: no instruction works in place
            if r in phys and r not in pinned and last.get(r) == k:
                free.append(phys.pop(r))
    header = [n_regs, b.n_slots, len(b.uniform_reg)]
    for vr, value_index in zip(b.uniform_reg.values(), range(len(b.uniform_reg))):
        header += [phys[vr], value_index]
    header += [phys[r] for r in outs]
    header.append(len(code))
    return np.asarray(header + [v for ins in code for v in ins], np.int32)


def compile_group(
    rule: Rule, cfg: _Config, info: _Leaf, n_slots: int, *, t: jax.Array, lr: jax.Array,
    extra: Any, num_leaves: int,
) -> Program | None:
    """The program of one group's update, or ``None`` if the rule cannot be compiled.

    Must be called while tracing the step: the uniform values are computed here.
    """
    if not _kernels.available() or info.dtype != _F32 or info.compute != _F32:
        return None
    spec = jax.ShapeDtypeStruct((STANDIN,), jnp.float32)

    def leaf_update(w, g, slots, t, lr, extra):
        return apply_rule(rule, cfg, info, w, g, slots, t=t, lr=lr, extra=extra,
                          index=-1, num_leaves=num_leaves)

    closed = jax.make_jaxpr(leaf_update)(spec, spec, (spec,) * n_slots, t, lr, extra)
    b = _Builder(n_slots)
    args = [_Elem(r) for r in range(2 + n_slots)] + jax.tree.leaves((t, lr, extra))
    try:
        outs = _walk(b, closed.jaxpr, closed.consts, args)
        out_regs = [b.reg(o) for o in outs]
    except Unsupported:
        return None
    if len(out_regs) != 1 + n_slots:
        return None
    uniforms = jnp.stack(b.uniforms) if b.uniforms else jnp.zeros((1,), jnp.float32)
    return Program(_allocate(b, out_regs), uniforms)


def run_group(
    program: Program, weights: list, grads: list, slots: Sequence[jax.Array]
) -> tuple[list, tuple[jax.Array, ...]]:
    """One group's step through the custom call; returns new weights and slot buffers."""
    slots = tuple(slots)
    new_w: list = []
    base = 0
    for lo in range(0, len(weights), CHUNK_LEAVES):
        ws, gs = weights[lo : lo + CHUNK_LEAVES], grads[lo : lo + CHUNK_LEAVES]
        k, s = len(ws), len(slots)
        call = jax.ffi.ffi_call(
            _kernels.TARGET,
            [jax.ShapeDtypeStruct(jnp.shape(w), jnp.float32) for w in ws]
            + [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in slots],
            input_output_aliases={
                **{1 + i: i for i in range(k)},
                **{1 + 2 * k + j: k + j for j in range(s)},
            },
            vmap_method="sequential",
        )
        out = call(
            program.uniforms, *ws, *gs, *slots,
            program=program.code, n_leaves=np.int64(k), slot_base=np.int64(base),
        )
        new_w += out[:k]
        slots = tuple(out[k:])
        base += sum(int(np.prod(jnp.shape(w))) for w in ws)
    return new_w, slots
