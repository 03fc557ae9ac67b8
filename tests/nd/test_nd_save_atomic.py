"""``mx.nd.save`` never destroys the previous file: a write that fails part-way (here
the file-size limit, as a full disk) leaves it intact (issue 19, item 1)."""

from __future__ import annotations

import contextlib
import errno
import os

import numpy as np
import pytest

import mxjax as mx
from mxjax import checkpoint

resource = pytest.importorskip("resource")  # POSIX
signal = pytest.importorskip("signal")


@contextlib.contextmanager
def file_size_limit(n: int):
    """Writes beyond ``n`` bytes fail with EFBIG, as on a full disk (soft limit only,
    restored after; SIGXFSZ ignored meanwhile)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("save", [mx.nd.save, checkpoint.save], ids=["nd", "checkpoint"])
def test_a_write_failing_part_way_keeps_the_previous_file(tmp_path, save):
    path = tmp_path / "model.params"
    save(path, {"w": np.arange(6, dtype=np.float32)})
    before = path.read_bytes()
    with file_size_limit(4096), pytest.raises(OSError) as e:
        save(path, {"w": np.arange(10000, dtype=np.float32)})
    assert e.value.errno == errno.EFBIG
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.params"]  # no temporary left


def test_save_replaces_and_keeps_the_usual_permissions(tmp_path):
    path = tmp_path / "a.params"
    mx.nd.save(path, {"w": np.ones(3, np.float32)})
    mx.nd.save(path, {"w": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(mx.nd.load(path)["w"], np.zeros(2, np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["a.params"]
