"""Compiled loops for the custom call: a program's instructions as one C loop.

The custom call's block interpreter (``elementwise.cc``) runs any program, but it keeps
every intermediate value in memory and spends ~2 ns per element per core on its
instructions, more than the memory traffic of an optimizer step. For each element phase
of a program (the whole update of an elementwise optimizer; LAMB's norms, then its
update), this module writes the instructions out as the body of one C loop, compiles it
with the system's C compiler into a small shared library, and registers the function
with the kernel, which then runs it on each segment of the call instead of the
interpreter. Values stay in CPU registers; the loop is bound by memory bandwidth.

The loop computes the same operations in the same order, each rounded to float32 on its
own (``-ffp-contract=off``, no fast-math), and sums a leaf in the interpreter's order
(eight interleaved partial sums per 256-element block), so its results equal the
interpreter's bit for bit. A loop is looked up by its program's full contents and its
phase, never by a hash alone.

Libraries are cached on disk (``$MXJAX_CACHE_DIR``, default ``~/.cache/mxjax``) under
the SHA-256 of the source, the flags, the compiler and the CPU's features, sealed and
checked before they are loaded (:mod:`mxjax._kernels.cache`), and in memory for the
process. Without a C compiler (reported once), or with ``MXJAX_NO_CODEGEN=1``, the
interpreter runs every program.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import cache, program

_PRELUDE = program.INCLUDES + program.SEMANTICS  # the interpreter's functions, verbatim

# -ffp-contract=off: every operation rounds on its own, as in the interpreter and XLA.
_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")

_BLOCK = program.BLOCK  # the blocks reductions are summed by
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}  # identity -> library, kept loaded
_NO_LOOPS = (
    "the custom call's interpreter runs every step (same results, slower; "
    "MXJAX_NO_CODEGEN=1 says so without this warning)"
)
_registered: set[bytes] = set()  # programs (bytes) with a registered loop


def _parse(code: np.ndarray) -> tuple | None:
    """(n_regs, n_slots, scalar registers, output registers, phases) of a program, the
    phases as (scalar, [(op, dst, a, b, c), ...]); ``None`` if it does not parse."""
    p = [int(x) for x in code]
    try:
        n_regs, n_slots = p[0], p[1]
        i = 2
        scalar_regs = []
        for _ in range(2):  # uniforms, then per-leaf uniforms: (register, index) pairs
            n = p[i]
            scalar_regs += p[i + 1 : i + 1 + 2 * n : 2]
            i += 1 + 2 * n
        n = p[i]  # registers the scalar phases and reductions write, one value per leaf
        scalar_regs += p[i + 1 : i + 1 + n]
        i += 1 + n
        outs = p[i : i + 1 + n_slots]
        i += 2 * (1 + n_slots)  # outputs, then the direct flags (not needed here)
        phases = []
        for _ in range(p[i]):
            kind, count = p[i + 1], p[i + 2]
            width = program.INSTR_WIDTH
            body = p[i + 3 : i + 3 + width * count]
            if len(body) != width * count or count < 0:
                return None
            instrs = [tuple(body[k : k + width]) for k in range(0, len(body), width)]
            phases.append((kind == program.PHASE_SCALAR, instrs))
            i += 2 + width * count
    except IndexError:
        return None
    if i + 1 != len(p) or len(outs) != 1 + n_slots:
        return None
    return n_regs, n_slots, set(scalar_regs), outs, phases


def source(code: np.ndarray, phase: int) -> str | None:
    """The C source of element phase ``phase``'s loop; ``None`` for anything else.

    The function is ``void mxjax_fused(const float* const* in, float* const* out,
    const float* scalars, float* red, int64_t n)``: ``in`` are w, g and the slots at the
    segment's first element, ``out`` the destinations of w' and the slots' (last phase),
    ``scalars[r]`` the value of register ``r`` where it holds one value for the leaf,
    ``red[r]`` the segment's sum into per-leaf register ``r`` (earlier phases): summed
    as the interpreter sums, eight interleaved partial sums per 256-element block.
    """
    parsed = _parse(code)
    if parsed is None:
        return None
    n_regs, n_slots, scalar_regs, outs, phases = parsed
    if not 0 <= phase < len(phases) or phases[phase][0]:
        return None
    last = phase == len(phases) - 1
    fixed = 2 + n_slots
    lines = [_PRELUDE, "void mxjax_fused(const float* const* in, float* const* out,"]
    lines.append("                 const float* scalars, float* red, int64_t n) {")
    lines += [f"  const float* in{r} = in[{r}];" for r in range(fixed)]
    if last:
        lines += [f"  float* out{o} = out[{o}];" for o in range(1 + n_slots)]
    lines += [f"  const float r{r} = scalars[{r}];" for r in sorted(scalar_regs)]
    body: list[str] = []
    sums: list[int] = []  # per reduction, in program order: its per-leaf register
    defined = set(range(fixed)) | scalar_regs
    for op, dst, a, b, c in phases[phase][1]:
        if not 0 <= op < len(program.OPS) or not {a, b, c} <= defined or not 0 <= dst < n_regs:
            return None
        name, expr = program.OPS[op]
        if name == "reduce_add":
            if last or dst not in scalar_regs:
                return None
            body.append(f"      acc{len(sums)}[j] = r{a};")
            sums.append(dst)
            continue
        if dst in scalar_regs or dst < fixed:
            return None
        expr = expr.format(a=f"r{a}", b=f"r{b}", c=f"r{c}")
        body.append(f"      {'' if dst in defined else 'float '}r{dst} = {expr};")
        defined.add(dst)
    if last:
        if any(r not in defined for r in outs):  # an output nothing computes: not valid
            return None
        # All inputs of element i are read before any output of element i is written.
        body += [f"      out{o}[i] = r{r};" for o, r in enumerate(outs)]
    lines += [f"  float acc{k}[{_BLOCK}];" for k in range(len(sums))]
    # Blocks only where there are sums to add in the interpreter's order.
    block = _BLOCK if sums else "n"
    lines.append(f"  for (int64_t pos = 0; pos < n; pos += {block}) {{")
    lines.append(f"    const int64_t m = n - pos < {block} ? n - pos : {block};")
    # out[o][i] may be in[x][i], never another index: no dependence between iterations
    lines.append("#pragma GCC ivdep")
    lines.append("#pragma clang loop vectorize(assume_safety)")
    lines.append("    for (int64_t j = 0; j < m; ++j) {")
    lines.append("      const int64_t i = pos + j;")
    lines += [f"      const float r{r} = in{r}[i];" for r in range(fixed)]
    lines += body
    lines.append("    }")
    for k, dst in enumerate(sums):
        lines += [
            "    {",
            "      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};",
            "      int64_t j = 0;",
            "      for (; j + 8 <= m; j += 8)",
            f"        for (int l = 0; l < 8; ++l) s[l] += acc{k}[j + l];",
            f"      for (int l = 0; j < m; ++j, ++l) s[l] += acc{k}[j];",
            f"      red[{dst}] += ((s[0] + s[4]) + (s[1] + s[5])) + "
            "((s[2] + s[6]) + (s[3] + s[7]));",
            "    }",
        ]
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def element_phases(code: np.ndarray) -> list[int]:
    """The indices of a program's element phases (each gets a loop)."""
    parsed = _parse(code)
    return [] if parsed is None else [k for k, (sc, _) in enumerate(parsed[4]) if not sc]


def _compiler() -> list[str] | None:
    """The C compiler's command: ``$CC`` (split as the shell would: ``ccache gcc``), else
    ``cc`` or ``gcc`` on the PATH; ``None`` (reported once) where there is none."""
    cc = os.environ.get("CC")
    if cc:
        try:
            cmd = shlex.split(cc)
        except ValueError:
            cmd = []
        if cmd and shutil.which(cmd[0]):
            return cmd
        cache.report(f"CC={cc!r} is not a command; {_NO_LOOPS}")
        return None
    found = shutil.which("cc") or shutil.which("gcc")
    if found is None:
        cache.report(f"no C compiler (cc, gcc or $CC) found; {_NO_LOOPS}")
        return None
    return [found]


@functools.cache
def _machine(cc: tuple[str, ...]) -> str:
    """What code compiled by ``cc`` depends on besides its source: compiler, flags, CPU."""
    try:
        version = subprocess.run(
            [*cc, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return "\n".join([shlex.join(cc), version, " ".join(_FLAGS), platform.machine(), flags])


def _compile(cc: list[str], src: str, where: Path) -> bytes | None:
    """The shared library ``cc`` makes of ``src`` (built in a private temporary folder
    inside ``where``); ``None``, reported once, if it fails."""
    try:
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            c_file = Path(tmp) / "fused.c"
            c_file.write_text(src)
            out = Path(tmp) / "fused.so"
            done = subprocess.run(
                [*cc, *_FLAGS, str(c_file), "-o", str(out), "-lm"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0 and out.exists():
                return out.read_bytes()
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as e:
        why = str(e)
    cache.report(f"{shlex.join(cc)} could not compile a loop ({why}); {_NO_LOOPS}")
    return None


def _identity(cc: list[str], src: str) -> str:
    """What ``cc`` would build of ``src`` on this machine, as a hex digest."""
    return hashlib.sha256((_machine(tuple(cc)) + "\n" + src).encode()).hexdigest()


def _build(src: str) -> ctypes.CDLL | None:
    """The loaded library of ``src``: from the disk cache if a valid one is there (see
    :mod:`mxjax._kernels.cache`), else compiled into it."""
    cc = _compiler()
    if cc is None:
        return None
    identity = _identity(cc, src)
    if identity not in _loaded:
        lib = cache.load(identity, functools.partial(_compile, cc, src))
        if lib is None:
            return None
        _loaded[identity] = lib
    return _loaded[identity]


def clear(kernel: ctypes.CDLL) -> None:
    """Unregister every compiled loop (the libraries stay loaded: a running step may be
    using one)."""
    with _lock:
        kernel.MxjaxClearFused()
        _registered.clear()


def register(kernel: ctypes.CDLL, code: np.ndarray) -> bool:
    """Compile a loop for each of ``code``'s element phases and register them with the
    kernel; whether every phase has one (otherwise the interpreter runs those left).

    Called while tracing a step; a program already registered costs a set look-up.
    """
    if os.environ.get("MXJAX_NO_CODEGEN"):
        return False
    code = np.ascontiguousarray(code, np.int32)
    key = code.tobytes()
    with _lock:
        if key in _registered:
            return True
        phases = element_phases(code)
        done = 0
        for phase in phases:
            src = source(code, phase)
            lib = None if src is None else _build(src)
            if lib is None:
                continue
            try:
                fn = ctypes.cast(lib.mxjax_fused, ctypes.c_void_p).value
            except AttributeError:
                continue
            done += kernel.MxjaxRegisterFused(
                code.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                ctypes.c_int64(code.size),
                ctypes.c_int32(phase),
                ctypes.c_void_p(fn),
            )
        if not phases or done != len(phases):
            return False
        _registered.add(key)
        return True
