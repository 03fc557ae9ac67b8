"""The compiled loops' disk cache never loads foreign code (mxjax/_kernels/cache.py): a
private folder of this user, libraries sealed with a secret key over what this process
would build; anything else is refused (the interpreter runs) or rebuilt, never dlopen-ed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax._kernels import cache, codegen
from mxjax.optimizer import _fused

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MXJAX_NO_KERNELS")), reason="MXJAX_NO_KERNELS: no kernel to test"
)

PLANTED = r"""
#include <stdint.h>
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
  FILE* f = fopen("%(marker)s", "w");
  if (f) fclose(f);
}
void mxjax_fused(const float* const* in, float* const* out, const float* scalars,
                 float* red, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[0][i] = 42.0f;
}
"""


def program(name: str, monkeypatch, **kw) -> np.ndarray:
    """The (one) program a multi-tensor step of ``name`` compiles."""
    found: list[np.ndarray] = []
    with monkeypatch.context() as m:
        m.setattr(_fused._kernels, "compile_loop", found.append)
        opt = mx.optimizer.create(name, multi_tensor=True, **kw)
        p = {"w": jnp.zeros((300,))}
        jax.jit(opt.update).lower(p, opt.init(p), p)
    (code,) = found
    return code


def adam_step() -> np.ndarray:
    """One traced-anew multi-tensor Adam step's new weights (loops as registered)."""
    opt = mx.optimizer.create("adam", multi_tensor=True, learning_rate=0.1)
    p = {"w": jnp.linspace(-1.0, 1.0, 300)}
    g = {"w": jnp.cos(p["w"] * 3.0)}
    return np.asarray(jax.jit(opt.update)(g, opt.init(p), p)[0]["w"])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh cache root; no loop registered or loaded in memory; warnings anew."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MXJAX_CACHE_DIR", str(root))
    monkeypatch.delenv("MXJAX_NO_CODEGEN", raising=False)
    monkeypatch.setattr(cache, "_reported", set())
    monkeypatch.setattr(codegen, "_loaded", {})
    _fused._kernels.clear_loops()
    yield root
    _fused._kernels.clear_loops()


@pytest.fixture(scope="module")
def interpreted() -> np.ndarray:
    """Adam's step on the interpreter: what every compiled loop must give."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MXJAX_NO_CODEGEN", "1")
    _fused._kernels.clear_loops()
    try:
        return adam_step()
    finally:
        mp.undo()


def adam_library(monkeypatch) -> tuple[np.ndarray, Path]:
    """Adam's program and the path its loop has in the cache."""
    code = program("adam", monkeypatch, learning_rate=0.1)
    cc = codegen._compiler()
    assert cc is not None, "these tests need a C compiler"
    identity = codegen._identity(cc, codegen.source(code, 0))
    return code, cache.root() / "kernels" / f"fused_{identity}.so"


def compile_planted(tmp_path: Path, marker: Path) -> Path:
    src = tmp_path / "planted.c"
    src.write_text(PLANTED % {"marker": marker})
    out = tmp_path / "planted.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", str(src), "-o", str(out)], check=True, timeout=120
    )
    return out


def test_the_suite_never_writes_into_the_users_cache() -> None:
    configured = Path(os.environ["MXJAX_CACHE_DIR"])
    assert configured == Path(os.environ["MXJAX_TEST_CACHE_DIR"])
    assert not configured.is_relative_to(Path("~/.cache").expanduser())


def test_folder_key_and_libraries_are_private(cache_dir, monkeypatch, interpreted) -> None:
    code, lib = adam_library(monkeypatch)
    assert _fused._kernels.compile_loop(code)
    assert stat.S_IMODE((cache_dir / "kernels").stat().st_mode) == 0o700
    assert stat.S_IMODE((cache_dir / "kernels" / "key").stat().st_mode) == 0o600
    assert stat.S_IMODE(lib.stat().st_mode) == 0o600
    # only the key and the library: no temporary left behind
    assert sorted(p.name for p in lib.parent.iterdir()) == sorted(["key", lib.name])
    np.testing.assert_array_equal(adam_step(), interpreted)


@pytest.mark.parametrize("seal", ["unsealed", "sealed-with-a-guessed-key"])
def test_a_planted_library_never_runs(
    seal: str, cache_dir, tmp_path, monkeypatch, interpreted
) -> None:
    code, lib = adam_library(monkeypatch)
    marker = tmp_path / "constructor-ran"
    planted = compile_planted(tmp_path, marker).read_bytes()
    if seal != "unsealed":
        planted += cache._MAGIC + cache._tag(os.urandom(32), lib.stem[6:], planted)
    cache.folder()  # the folder as mxjax makes it, then the file planted in it
    lib.write_bytes(planted)
    assert _fused._kernels.compile_loop(code)  # rebuilt, not loaded
    assert not marker.exists()
    np.testing.assert_array_equal(adam_step(), interpreted)  # not 42.0
    assert lib.read_bytes() != planted
    # the test can fail: loading the planted library does run its constructor
    copy = tmp_path / "copy.so"
    shutil.copy(tmp_path / "planted.so", copy)
    ctypes.CDLL(str(copy))
    assert marker.exists()


def test_another_programs_valid_library_under_adams_name(
    cache_dir, monkeypatch, interpreted
) -> None:
    code, lib = adam_library(monkeypatch)
    sgd = program("sgd", monkeypatch, momentum=0.9)
    assert _fused._kernels.compile_loop(sgd)  # a genuine, sealed library of SGD's loop
    (sgd_lib,) = lib.parent.glob("fused_*.so")
    shutil.copy(sgd_lib, lib)
    _fused._kernels.clear_loops()
    monkeypatch.setattr(codegen, "_loaded", {})
    assert _fused._kernels.compile_loop(code)
    assert lib.read_bytes() != sgd_lib.read_bytes()  # replaced by Adam's own
    np.testing.assert_array_equal(adam_step(), interpreted)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1 :],
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # the seal altered
        lambda b: b[: -len(cache._MAGIC) - 32],  # the seal cut off
        lambda b: b"",  # empty
    ],
    ids=["truncated", "bit-flipped", "seal-altered", "seal-removed", "empty"],
)
def test_a_damaged_entry_is_rebuilt(damage, cache_dir, monkeypatch, interpreted) -> None:
    code, lib = adam_library(monkeypatch)
    assert _fused._kernels.compile_loop(code)
    good = lib.read_bytes()
    lib.write_bytes(damage(good))
    _fused._kernels.clear_loops()
    monkeypatch.setattr(codegen, "_loaded", {})
    assert _fused._kernels.compile_loop(code)
    assert lib.read_bytes() == good  # rebuilt (the compiler is deterministic)
    np.testing.assert_array_equal(adam_step(), interpreted)


def test_a_stale_entry_from_an_old_key_is_rebuilt(cache_dir, monkeypatch) -> None:
    code, lib = adam_library(monkeypatch)
    assert _fused._kernels.compile_loop(code)
    old = lib.read_bytes()
    (lib.parent / "key").write_bytes(b"short")  # a corrupt key is replaced, not fatal
    _fused._kernels.clear_loops()
    monkeypatch.setattr(codegen, "_loaded", {})
    assert _fused._kernels.compile_loop(code)
    assert len((lib.parent / "key").read_bytes()) == 32
    assert lib.read_bytes() != old  # sealed again under the new key


def test_a_library_others_may_write_is_not_loaded(cache_dir, monkeypatch) -> None:
    code, lib = adam_library(monkeypatch)
    assert _fused._kernels.compile_loop(code)
    lib.chmod(0o666)
    _fused._kernels.clear_loops()
    monkeypatch.setattr(codegen, "_loaded", {})
    assert _fused._kernels.compile_loop(code)
    assert stat.S_IMODE(lib.stat().st_mode) == 0o600  # replaced


def refused(code: np.ndarray, match: str) -> None:
    """The folder is refused with a warning naming why; no loop, no library written."""
    with pytest.warns(UserWarning, match=match):
        assert not _fused._kernels.compile_loop(code)


def test_a_folder_open_to_others_is_refused(cache_dir, monkeypatch) -> None:
    code, lib = adam_library(monkeypatch)
    cache.folder()
    lib.parent.chmod(0o755)
    refused(code, "open to other users")
    assert not lib.exists()


def test_a_folder_of_another_user_is_refused(cache_dir, monkeypatch) -> None:
    code, lib = adam_library(monkeypatch)
    cache.folder()
    monkeypatch.setattr(cache.os, "getuid", lambda: os.geteuid() + 4321)
    refused(code, "belongs to another user")
    assert not lib.exists()


def test_a_symlinked_cache_folder_is_refused(cache_dir, tmp_path, monkeypatch) -> None:
    code, _ = adam_library(monkeypatch)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    cache_dir.mkdir()
    (cache_dir / "kernels").symlink_to(target)
    refused(code, "symbolic link")
    assert not list(target.iterdir())


def test_a_world_writable_parent_without_sticky_bit_is_refused(
    cache_dir, monkeypatch
) -> None:
    code, _ = adam_library(monkeypatch)
    cache.folder()
    cache_dir.chmod(0o777)
    refused(code, "writable by everyone and not sticky")
    cache_dir.chmod(0o1777)  # /tmp's mode: others cannot rename what is ours
    assert _fused._kernels.compile_loop(code)


def test_a_refused_folder_is_reported_once(cache_dir, monkeypatch) -> None:
    code, _ = adam_library(monkeypatch)
    cache.folder()
    (cache_dir / "kernels").chmod(0o750)
    refused(code, "open to other users")
    sgd = program("sgd", monkeypatch)
    assert not _fused._kernels.compile_loop(sgd)  # no second warning (filterwarnings)
