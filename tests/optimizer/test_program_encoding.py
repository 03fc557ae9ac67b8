"""The custom call's program encoding is described once (mxjax/_kernels/program.py):
the checked-in C header, the built kernel, the compiled loops and the translator all
follow that one description."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np
import pytest

from mxjax import _kernels
from mxjax._kernels import cache, codegen, program
from mxjax.optimizer import _fused

needs_kernel = pytest.mark.skipif(
    bool(os.environ.get("MXJAX_NO_KERNELS")), reason="MXJAX_NO_KERNELS: no kernel to test"
)


def test_the_checked_in_header_is_the_generated_one() -> None:
    checked_in = Path(program.__file__).with_name("program.h").read_text()
    assert checked_in == program.header(), (
        "program.h is stale: run python -c 'from mxjax._kernels import program; "
        "program.write()' and rebuild the kernel"
    )


def test_the_header_lists_every_opcode_and_expression_in_order() -> None:
    text = program.header()
    for i, (name, expr) in enumerate(program.OPS):
        assert f"  {program._camel(name)} = {i}," in text
        if expr is not None:
            assert expr.format(a="a[i]", b="b[i]", c="c[i]") in text
    assert f"kNumOps = {len(program.OPS)}" in text and program.SEMANTICS in text


@needs_kernel
def test_the_built_kernel_has_this_encoding() -> None:
    lib = _kernels._library()
    assert lib is not None, "the kernel library was not built"
    assert _kernels._stale(lib) is None


@needs_kernel
def test_a_kernel_built_from_another_encoding_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(_kernels, "_library", functools.cache(_kernels._library.__wrapped__))
    monkeypatch.setattr(cache, "_reported", set())
    monkeypatch.setattr(program, "DIGEST", "0" * 16)  # as if program.py had changed
    with pytest.warns(UserWarning, match="another program encoding"):
        assert not _kernels.available()


def test_translator_and_loops_use_the_one_table() -> None:
    assert _fused._OPS is program.OPCODE
    assert program.INCLUDES + program.SEMANTICS == codegen._PRELUDE
    assert codegen._BLOCK == program.BLOCK


@needs_kernel
def test_every_operation_compiles_as_a_loop(monkeypatch, tmp_path) -> None:
    """A program with one instruction of each operation (on w, g and a slot), written
    by hand in program.py's layout: its C compiles and the kernel, which parses it with
    program.h's opcodes, registers its loop; an opcode past the table is refused."""
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MXJAX_NO_CODEGEN", raising=False)
    ops = [name for name, expr in program.OPS if expr is not None]
    n_regs = 3 + len(ops)
    # n_regs, 1 slot, no uniforms / per-leaf values; outputs w' = last, slot' = first
    head = [n_regs, 1, 0, 0, 0, n_regs - 1, 3, 0, 0, 1, program.PHASE_ELEMENT, len(ops)]
    body = [x for k, name in enumerate(ops) for x in (program.OPCODE[name], 3 + k, 0, 1, 2)]
    code = np.asarray(head + body, np.int32)
    src = codegen.source(code, 0)
    for name in ops:
        assert program.EXPR[name].format(a="r0", b="r1", c="r2") in src, name
    assert _kernels.compile_loop(code)
    _kernels.clear_loops()
    bad = np.asarray(head[:-1] + [1, len(program.OPS), 3, 0, 1, 2], np.int32)
    lib = _kernels._library()
    assert not lib.MxjaxRegisterFused(
        bad.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
        ctypes.c_int64(bad.size),
        ctypes.c_int32(0),
        ctypes.c_void_p(1),  # refused, so never registered
    )
