"""The custom call's compiled loops (mxjax/_kernels/codegen.py): a program of one element
phase becomes a C loop, compiled once, cached on disk, and used instead of the block
interpreter with the same bits; anything that goes wrong leaves the interpreter."""

from __future__ import annotations

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax._kernels import cache, codegen
from mxjax.optimizer import _fused
from tests.helpers import kernel_loops


def params() -> dict:
    key = jax.random.key(0)
    return {
        "a_weight": jax.random.normal(key, (40_000,)),  # parallel segments
        "b_bias": jax.random.normal(jax.random.fold_in(key, 1), (3, 5)),
    }


KERNEL = _fused._kernels.available()
"""Whether the kernel library is loaded: without it (``MXJAX_NO_KERNELS=1``) no loop is
ever compiled (``compile_loop`` is false) and XLA runs every step, as these tests then
assert; the programs' C source is still written and checked."""


def programs(name: str, monkeypatch, **kw) -> list[np.ndarray]:
    """The programs a multi-tensor step of ``name`` compiles (its trace; translated
    even where the kernel library is not loaded)."""
    found: list[np.ndarray] = []
    with monkeypatch.context() as m:
        m.setattr(_fused._kernels, "available", lambda: True)
        m.setattr(_fused._kernels, "compile_loop", found.append)
        opt = mx.optimizer.create(name, multi_tensor=True, **kw)
        p = params()
        jax.jit(opt.update).lower(p, opt.init(p), p)
    return found


def step(name: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = mx.optimizer.create(name, multi_tensor=True, **kw)
    p = params()
    g = jax.tree.map(lambda x: jnp.cos(x) * 0.3, p)
    return jax.jit(opt.update)(g, opt.init(p), p)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty disk cache and no loop registered, before and after."""
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MXJAX_NO_CODEGEN", raising=False)
    monkeypatch.setattr(cache, "_reported", set())  # each test sees its own warnings
    monkeypatch.setattr(codegen, "_loaded", {})  # libraries come from this disk cache
    _fused._kernels.clear_loops()
    yield tmp_path
    _fused._kernels.clear_loops()


def test_source_is_one_loop_over_the_elements(monkeypatch) -> None:
    (code,) = programs("adam", monkeypatch, wd=0.01, clip_gradient=1.0)
    assert codegen.element_phases(code) == [0]
    src = codegen.source(code, 0)
    assert src.count("for (int64_t j = 0; j < m; ++j)") == 1
    assert "sqrtf(" in src and "out2[i] =" in src and "out3" not in src
    assert "red[" not in src
    assert codegen.source(code, 1) is None


@pytest.mark.parametrize("name", ["lamb", "lans"])
def test_programs_with_norms_get_a_loop_per_element_phase(name: str, monkeypatch) -> None:
    (code,) = programs(name, monkeypatch)
    phases = codegen.element_phases(code)
    assert len(phases) >= 2  # the norms' sums, then the update
    *sums, last = [codegen.source(code, k) for k in phases]
    assert all("red[" in src and "out0" not in src for src in sums)
    assert "red[" not in last and "out0[i] =" in last


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c[:-1],  # truncated
        lambda c: np.concatenate([c[:-5], [99, 20, 0, 0, 0]]),  # unknown operation
        lambda c: np.concatenate([c[:-5], [0, c[-4], 5000, 0, 0]]),  # unknown register
    ],
)
def test_malformed_programs_get_no_loop(edit, monkeypatch, fresh) -> None:
    (code,) = programs("sgd", monkeypatch, momentum=0.9)
    bad = np.asarray(edit(code), np.int32)
    assert codegen.source(bad, 0) is None or not _fused._kernels.compile_loop(bad)
    assert not list(fresh.glob("kernels/*.so"))


def test_a_loop_is_compiled_once_then_read_from_the_cache(monkeypatch, fresh) -> None:
    (code,) = programs("rmsprop", monkeypatch, centered=True)
    assert _fused._kernels.compile_loop(code) == KERNEL
    if not KERNEL:  # nothing compiled, nothing cached
        assert not list(fresh.glob("kernels/*.so"))
        return
    (lib,) = fresh.glob("kernels/*.so")
    _fused._kernels.clear_loops()

    def no_compiler(*args, **kwargs):
        raise AssertionError(f"compiled again: {args}")

    monkeypatch.setattr(codegen.subprocess, "run", no_compiler)
    assert _fused._kernels.compile_loop(code)  # from the disk cache
    assert list(fresh.glob("kernels/*.so")) == [lib]


def reported_if_kernel(match: str) -> contextlib.AbstractContextManager:
    """The failure is reported once where the kernel could have used a loop; without
    the kernel nothing is compiled, so nothing is said (any warning fails the test)."""
    return pytest.warns(UserWarning, match=match) if KERNEL else contextlib.nullcontext()


def test_without_a_compiler_the_interpreter_gives_the_same_numbers(
    monkeypatch, fresh
) -> None:
    want = step("adam", wd=0.1)  # compiled loop
    assert bool(list(fresh.glob("kernels/*.so"))) == KERNEL
    _fused._kernels.clear_loops()
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(fresh / "other"))
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    (code,) = programs("adam", monkeypatch, wd=0.1)
    with reported_if_kernel("no-such-compiler.* is not a command"):
        assert not _fused._kernels.compile_loop(code)
    got = step("adam", wd=0.1)  # interpreter (XLA without the kernel: the same again)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_compile_error_leaves_the_interpreter(monkeypatch, fresh) -> None:
    (code,) = programs("sgd", monkeypatch)
    monkeypatch.setattr(codegen, "source", lambda code, phase: "this is not C")
    with reported_if_kernel("could not compile a loop"):
        assert not _fused._kernels.compile_loop(code)
    assert not list(fresh.glob("kernels/*.so"))


def test_no_codegen_environment_variable(monkeypatch, fresh) -> None:
    monkeypatch.setenv("MXJAX_NO_CODEGEN", "1")
    (code,) = programs("adagrad", monkeypatch)
    assert not _fused._kernels.compile_loop(code)
    assert not list(fresh.glob("kernels/*.so"))


def test_an_unusable_cache_folder_falls_back_to_a_private_one(monkeypatch, fresh) -> None:
    blocker = fresh / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(blocker))
    (code,) = programs("nag", monkeypatch, momentum=0.9)
    assert _fused._kernels.compile_loop(code) == KERNEL
    assert cache.folder() == cache._private_folder() != blocker


def test_a_leaf_sum_has_the_interpreters_bits(monkeypatch) -> None:
    """A rule that returns a leaf's sum: the loop sums in the interpreter's fixed order
    (a different order changes the low bits of a 100K-element sum)."""

    def kernel(w, g, slots, h):
        return w + jnp.sum(g * g) * 1e-3, slots

    rule = mx.optimizer.Rule(kernel, per_leaf_scalars=True)
    key = jax.random.key(7)
    p = {f"w{i}": jax.random.normal(jax.random.fold_in(key, i), (100_003 + i,)) for i in range(2)}
    g = jax.tree.map(lambda x: jnp.sin(x * 3.0) * 7.0, p)
    got = {}
    for mode in ("interpreter", "compiled loop"):
        with kernel_loops(monkeypatch, mode == "compiled loop") as compiled:
            opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=True)
            got[mode] = jax.jit(opt.update)(g, opt.init(p), p)[0]
        assert compiled == ([mode == "compiled loop"] if KERNEL else [])
    _fused._kernels.clear_loops()
    for a, b in zip(
        jax.tree.leaves(got["compiled loop"]), jax.tree.leaves(got["interpreter"]), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def leaf_sum_as_specified(x: np.ndarray, chunk: int = 1 << 15, block: int = 256) -> np.float32:
    """A leaf's sum as elementwise.cc specifies it, in float32 NumPy: per 256-element
    block, eight interleaved running sums (element j into sum j mod 8, left to right)
    combined as ((s0+s4)+(s1+s5))+((s2+s6)+(s3+s7)); the blocks' sums added in order
    into each segment of ``chunk`` elements; the segments' sums added in order to 0."""
    total = np.float32(0)
    for lo in range(0, x.size, chunk):
        seg = np.float32(0)
        for b in range(lo, min(lo + chunk, x.size), block):
            part = x[b : min(b + block, lo + chunk, x.size)]
            rows = np.zeros((-(-part.size // 8), 8), np.float32)  # +0.0 pads: exact
            rows.flat[: part.size] = part
            s = np.add.accumulate(rows, axis=0, dtype=np.float32)[-1]
            seg = seg + (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])))
        total = total + seg
    return total


@pytest.mark.parametrize("packed", [False, True], ids=["leaves", "packed"])
@pytest.mark.parametrize("mode", ["compiled loop", "interpreter"])
def test_leaf_sums_follow_the_specified_order_whole_or_in_segments(
    mode: str, packed: bool, monkeypatch
) -> None:
    """Leaves up to one segment run all their phases at once, larger ones phase by phase
    in segments: either way a leaf's sum has exactly the specified bits (many small
    leaves across the threads' batches, the segment size, one element either side)."""

    def kernel(w, g, slots, h):
        return w + jnp.sum(g * g) * 1e-3, slots

    rng = np.random.default_rng(5)
    sizes = [*rng.integers(1, 3000, 120), 0, 32_767, 32_768, 32_769, 70_001, 1]
    p = {f"w{i:03d}": jnp.asarray(rng.standard_normal(n), jnp.float32) for i, n in enumerate(sizes)}
    g = {k: jnp.asarray(rng.standard_normal(v.size) * 3, jnp.float32) for k, v in p.items()}
    rule = mx.optimizer.Rule(kernel, per_leaf_scalars=True)
    with kernel_loops(monkeypatch, mode == "compiled loop") as compiled:
        opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=True)
        pp, gg = (opt.pack(p), opt.pack(g)) if packed else (p, g)
        new = jax.jit(opt.update)(gg, opt.init(pp), pp)[0]
        new = new.unpack() if packed else new
    _fused._kernels.clear_loops()
    assert compiled == ([mode == "compiled loop"] if KERNEL else [])
    for k, w in p.items():
        gk = np.asarray(g[k])
        want = np.asarray(w) + leaf_sum_as_specified(gk * gk) * np.float32(1e-3)
        if KERNEL:
            np.testing.assert_array_equal(np.asarray(new[k]), want, err_msg=k)
        else:  # XLA sums in its own order
            np.testing.assert_allclose(
                np.asarray(new[k]), want, rtol=1e-5, atol=1e-6, err_msg=k
            )
