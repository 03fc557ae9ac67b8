"""The custom call's program encoding, described once.

The translator (``mxjax/optimizer/_fused.py``) writes programs with these opcodes, the
compiled loops (:mod:`mxjax._kernels.codegen`) turn each instruction into the C
expression given here, and the interpreter (``elementwise.cc``) includes ``program.h``,
generated from this module (:func:`write`; a test checks that the file in the
repository is what this module writes): the opcodes, the
instruction width, the phase kinds, the slot limit, the functions that give XLA's
semantics (max/min/sign on NaN, signed zeros and denormals) and one ``case`` per
operation for the interpreter. An expression reads its operands as ``{a}``, ``{b}``,
``{c}`` and computes one float32 (each operation rounded on its own: the kernel and the
loops are compiled with ``-ffp-contract=off``); a predicate is 1.0 or 0.0.

Program layout (int32)::

    n_regs, n_slots,
    n_uniform, (reg, index into u) * n_uniform,
    n_leaf_uniform, (reg, column of ul) * n_leaf_uniform,
    n_per_leaf, (reg) * n_per_leaf            -- written by scalar phases and reductions
    (out_reg) * (1 + n_slots)                 -- w', slot'
    (direct) * (1 + n_slots)                  -- 1: the last phase computes this output
                                                 straight into its destination
    n_phases, per phase: kind (PHASE_ELEMENT or PHASE_SCALAR), n_instr,
                         (op, dst, a, b, c) * n_instr

Registers 0, 1 and 2..1+n_slots are w, g and the slots.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

OPS: tuple[tuple[str, str | None], ...] = (
    ("add", "{a} + {b}"),
    ("sub", "{a} - {b}"),
    ("mul", "{a} * {b}"),
    ("div", "{a} / {b}"),
    ("neg", "-{a}"),
    ("max", "mx_max({a}, {b})"),
    ("min", "mx_min({a}, {b})"),
    ("abs", "fabsf({a})"),
    ("sign", "mx_sign({a})"),
    ("sqrt", "sqrtf({a})"),
    ("eq", "({a} == {b}) ? 1.0f : 0.0f"),
    ("ne", "({a} != {b}) ? 1.0f : 0.0f"),
    ("lt", "({a} < {b}) ? 1.0f : 0.0f"),
    ("le", "({a} <= {b}) ? 1.0f : 0.0f"),
    ("gt", "({a} > {b}) ? 1.0f : 0.0f"),
    ("ge", "({a} >= {b}) ? 1.0f : 0.0f"),
    ("select", "({a} != 0.0f) ? {c} : {b}"),  # select_n(a, b, c)
    ("and", "({a} != 0.0f && {b} != 0.0f) ? 1.0f : 0.0f"),
    ("or", "({a} != 0.0f || {b} != 0.0f) ? 1.0f : 0.0f"),
    ("not", "({a} != 0.0f) ? 0.0f : 1.0f"),
    ("copy", "{a}"),
    ("is_finite", "(fabsf({a}) <= FLT_MAX) ? 1.0f : 0.0f"),
    ("floor", "floorf(mx_daz({a}))"),
    ("ceil", "ceilf(mx_daz({a}))"),
    ("reduce_add", None),  # sums an element register over the leaf (not an expression)
    ("muladd", "{a} * {b} + {c}"),  # each operation rounded
    ("mulsub", "{a} * {b} - {c}"),
    ("submul", "{c} - {a} * {b}"),
)
"""(name, C expression) per opcode, in opcode order."""

OPCODE = {name: i for i, (name, _) in enumerate(OPS)}
EXPR = {name: expr for name, expr in OPS if expr is not None}
INSTR_WIDTH = 5  # op, dst, a, b, c
PHASE_ELEMENT, PHASE_SCALAR = 0, 1
MAX_SLOTS = 16
BLOCK = 256  # elements per interpreter block; sums are added in this blocking

SEMANTICS = """\
/* XLA's semantics on CPU, measured (tests/optimizer/test_fast_path_differential.py):
   denormal operands count as zeros of their sign (XLA runs with FTZ and DAZ, and so
   does the custom call); max and min propagate a NaN, the first operand's if both are
   NaN, order -0 < +0, and give a NaN second operand the sign bits of both operands
   combined as for zeros (and for max, or for min); sign, floor and ceil of a denormal
   are the zero of its sign; a NaN passes through sign, floor and ceil unchanged. */
static inline uint32_t mx_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float mx_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline float mx_daz(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }
static inline float mx_max(float a, float b) {
  const float x = mx_daz(a), y = mx_daz(b);
  const float tie = mx_float(mx_bits(y) & (mx_bits(x) | 0x7fffffffu));
  return a != a ? a : (x > y ? x : (y > x ? y : tie));
}
static inline float mx_min(float a, float b) {
  const float x = mx_daz(a), y = mx_daz(b);
  const float tie = mx_float(mx_bits(y) | (mx_bits(x) & 0x80000000u));
  return a != a ? a : (x < y ? x : (y < x ? y : tie));
}
static inline float mx_sign(float a) {
  return a > 0.0f ? 1.0f : (a < 0.0f ? -1.0f : mx_daz(a));
}
"""
"""C (and C++) functions the expressions use; the compiled loops include them too."""

INCLUDES = "#include <float.h>\n#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"


DIGEST = hashlib.sha256(
    repr((OPS, INSTR_WIDTH, PHASE_ELEMENT, PHASE_SCALAR, MAX_SLOTS, BLOCK, SEMANTICS)).encode()
).hexdigest()[:16]
"""Names this encoding; ``program.h`` (so the built kernel) records it."""


def _camel(name: str) -> str:
    return "k" + "".join(part.capitalize() for part in name.split("_"))


def header() -> str:
    """The text of ``program.h``."""
    enum = ",\n".join(f"  {_camel(name)} = {i}" for i, (name, _) in enumerate(OPS))
    cases = " \\\n".join(
        f"  case {_camel(name)}: LOOP({expr.format(a='a[i]', b='b[i]', c='c[i]')})"
        for name, expr in OPS
        if expr is not None
    )
    return f"""\
// Generated by mxjax/_kernels/program.py (program.write()): do not edit; a test checks
// that this file is what program.py writes.
// Included by elementwise.cc inside its anonymous namespace, after <cfloat>, <cmath>,
// <cstdint> and <cstring>.
#ifndef MXJAX_PROGRAM_H_
#define MXJAX_PROGRAM_H_

enum Op : int32_t {{
{enum},
  kNumOps = {len(OPS)}
}};

constexpr int32_t kInstrWidth = {INSTR_WIDTH};  // op, dst, a, b, c
constexpr int32_t kPhaseElement = {PHASE_ELEMENT}, kPhaseScalar = {PHASE_SCALAR};
constexpr int32_t kMaxSlots = {MAX_SLOTS};
constexpr int64_t kBlock = {BLOCK};
constexpr char kEncoding[] = "{DIGEST}";  // program.py's DIGEST

{SEMANTICS}
// One `case` per operation with an expression: LOOP(expr) computes d[i] = expr over a
// block, reading operands a[i], b[i], c[i].
#define MXJAX_OP_CASES(LOOP) \\
{cases}

#endif  // MXJAX_PROGRAM_H_
"""


def write() -> None:
    """Write ``program.h`` next to this file (after changing this module; then rebuild)."""
    (Path(__file__).parent / "program.h").write_text(header())
