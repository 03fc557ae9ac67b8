"""Never crash where mxjax could fall back, and never fall back silently: a kernel
library XLA cannot call (built against another jaxlib), a kernel that was not built, a
missing compiler or one given with arguments (``CC="ccache gcc"``)."""

from __future__ import annotations

import functools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax import _kernels
from mxjax._kernels import cache, codegen
from mxjax.optimizer import _fused

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MXJAX_NO_KERNELS")), reason="MXJAX_NO_KERNELS: no kernel to test"
)


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """``_kernels._library`` decided anew inside the test (the process's decision is
    restored after it); warnings reported anew; an empty loop cache."""
    _kernels.clear_loops()
    process_library = _kernels._library
    monkeypatch.setattr(_kernels, "_library", functools.cache(process_library.__wrapped__))
    monkeypatch.setattr(cache, "_reported", set())
    monkeypatch.setattr(codegen, "_loaded", {})
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MXJAX_NO_CODEGEN", raising=False)
    yield
    if process_library() is not None:
        codegen.clear(process_library())


def adam_step() -> list[np.ndarray]:
    """Adam's multi-tensor step, traced anew (equal optimizers share jit's cache)."""
    jax.clear_caches()
    opt = mx.optimizer.create("adam", multi_tensor=True, learning_rate=0.1, wd=0.01)
    p = {"a": jnp.linspace(-1.0, 1.0, 300), "b": jnp.ones((4, 5))}
    g = jax.tree.map(lambda x: jnp.cos(x * 3.0), p)
    return [np.asarray(x) for x in jax.tree.leaves(jax.jit(opt.update)(g, opt.init(p), p))]


@pytest.fixture(scope="module")
def on_xla() -> list[np.ndarray]:
    """Adam's multi-tensor step with the kernel switched off by the user."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("MXJAX_NO_KERNELS", "1")
        m.setattr(_kernels, "_library", functools.cache(_kernels._library.__wrapped__))
        return adam_step()


@pytest.mark.parametrize("running", [(0, 1), (1, 3)], ids=["older-minor", "other-major"])
def test_a_kernel_built_for_a_newer_ffi_falls_back_to_xla_once(
    running, fresh_library, monkeypatch, on_xla
) -> None:
    """The library was built with FFI API 0.3 (this jaxlib's); a jaxlib whose XLA speaks
    0.1 (jax 0.5.0) rejects it at every call: mxjax uses XLA, and says so once."""
    monkeypatch.setattr(_kernels, "running_ffi_api", lambda: running)
    with pytest.warns(UserWarning, match=r"FFI API 0\.3\).* cannot call"):
        got = adam_step()
    for x, y in zip(got, on_xla, strict=True):
        np.testing.assert_array_equal(x, y)
    adam_step()  # not reported twice (filterwarnings = error would fail on a warning)
    assert not _kernels.available()


def test_an_older_ffi_library_is_used(fresh_library, monkeypatch) -> None:
    """XLA keeps calling handlers built with older minor versions of its FFI."""
    monkeypatch.setattr(_kernels, "running_ffi_api", lambda: (0, 9))
    assert _kernels.available()


def test_unknown_ffi_version_trusts_only_the_same_jaxlib(fresh_library, monkeypatch) -> None:
    monkeypatch.setattr(_kernels, "running_ffi_api", lambda: None)
    assert _kernels.available()  # built with this very jaxlib
    monkeypatch.setattr(_kernels, "_library", functools.cache(_kernels._library.__wrapped__))
    monkeypatch.setattr(_kernels, "jaxlib_version", lambda: "0.0.1")
    with pytest.warns(UserWarning, match="FFI API version is unknown"):
        assert not _kernels.available()


def test_a_kernel_that_was_not_built_is_reported_once(
    fresh_library, monkeypatch, on_xla
) -> None:
    monkeypatch.setattr(_kernels, "library_path", lambda: None)
    with pytest.warns(UserWarning, match="kernel was not built"):
        got = adam_step()
    for x, y in zip(got, on_xla, strict=True):
        np.testing.assert_array_equal(x, y)
    adam_step()


def test_no_kernel_warning_when_the_user_asked_for_xla(fresh_library, monkeypatch) -> None:
    monkeypatch.setattr(_kernels, "library_path", lambda: None)
    monkeypatch.setenv("MXJAX_NO_KERNELS", "1")
    assert not _kernels.available()  # no warning: filterwarnings = error


def adam_program(monkeypatch) -> np.ndarray:
    found: list[np.ndarray] = []
    with monkeypatch.context() as m:
        m.setattr(_fused._kernels, "compile_loop", found.append)
        opt = mx.optimizer.create("adam", multi_tensor=True)
        p = {"w": jnp.zeros((30,))}
        jax.jit(opt.update).lower(p, opt.init(p), p)
    (code,) = found
    return code


def test_a_missing_compiler_is_reported_once(fresh_library, monkeypatch) -> None:
    code = adam_program(monkeypatch)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(codegen.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no C compiler"):
        assert not _kernels.compile_loop(code)
    assert not _kernels.compile_loop(code)  # once


def test_a_compiler_with_arguments(fresh_library, tmp_path, monkeypatch) -> None:
    """``CC="ccache gcc"``: the command is split as the shell would."""
    code = adam_program(monkeypatch)
    cc = shutil.which("cc")
    assert cc is not None, "this test needs a C compiler"
    monkeypatch.setenv("CC", f"{cc} -w")
    assert codegen._compiler() == [cc, "-w"]
    assert _kernels.compile_loop(code)
    assert list(tmp_path.glob("kernels/fused_*.so"))
