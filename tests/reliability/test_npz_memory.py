"""Reading ``.npz`` files allocates in proportion to the bytes the file really holds
(issue 19, item 3): headers and sizes are checked before anything is decompressed,
and ``checkpoint.describe`` decompresses no array data."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from mxjax import checkpoint
from mxjax import initializer as I
from mxjax import nd

MB = 1 << 20


def peak_bytes(fn):
    """``fn()``'s peak traced allocation (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - returned for the caller to check
            result = e
        else:
            result = None
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def bomb(path, nbytes: int, name: str = "fc_weight", every: int = 2048) -> int:
    """A deflated member of ``nbytes`` of (nearly) zeros: ~1000x smaller on disk."""
    rs = np.random.RandomState(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            f.write(npy_header((nbytes // 4,)))
            chunk = np.zeros(MB, np.uint8)
            chunk[::every] = rs.randint(0, 256, MB // every)
            for _ in range(nbytes // MB):
                f.write(chunk.tobytes())
    return path.stat().st_size


@pytest.mark.parametrize("every", [2048, 256])
def test_a_small_deflated_file_claiming_much_more_is_refused_before_allocating(tmp_path, every):
    path = tmp_path / "bomb.npz"
    size = bomb(path, 48 * MB, every=every)
    assert size < 48 * MB / 50  # far more compressed than real parameters
    peak, err = peak_bytes(lambda: I.Load(str(path)))
    assert isinstance(err, nd.MXNetFileError), err
    assert "claim" in str(err)
    assert peak < 4 * MB, peak  # nothing of the claimed 48 MB was allocated
    peak, err = peak_bytes(lambda: checkpoint.describe(path))
    assert isinstance(err, checkpoint.CheckpointError), err
    assert peak < 4 * MB, peak


def test_describe_decompresses_nothing_of_a_non_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.ones(4 * MB, np.float32))  # 16 MB stored, a real array
    peak, err = peak_bytes(lambda: checkpoint.describe(path))
    assert isinstance(err, checkpoint.CheckpointError) and "not an mxjax" in str(err)
    assert peak < 1 * MB, peak


def test_describe_reads_only_the_description(tmp_path):
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"m": np.ones(4 * MB, np.float32)})
    peak, err = peak_bytes(lambda: checkpoint.describe(path))
    assert err is None, err
    assert peak < 1 * MB, peak


def test_reading_allocates_the_arrays_once(tmp_path):
    path = tmp_path / "w.npz"
    w = np.random.RandomState(0).normal(size=2 * MB).astype(np.float32)  # 8 MB
    np.savez_compressed(path, fc_weight=w, fc_bias=np.zeros(1000, np.float32))
    peak, err = peak_bytes(lambda: I.Load(str(path)))
    assert err is None, err
    assert peak < 8 * MB + 2 * MB, peak  # the array, once, plus decompression chunks
    np.testing.assert_array_equal(I.Load(str(path)).param["fc_weight"], w)


def test_members_overlapping_in_the_file_are_refused(tmp_path):
    """A zip whose directory points many entries at the same bytes."""
    path = tmp_path / "overlap.npz"
    np.savez(path, a=np.ones(1000, np.float32))
    raw = bytearray(path.read_bytes())
    # duplicate the central-directory entry under other names, all at offset 0
    cd = raw.index(b"PK\x01\x02")
    eocd = raw.index(b"PK\x05\x06")
    entry = bytes(raw[cd:eocd])
    extra = [entry.replace(b"a.npy", f"{c}.npy".encode()) for c in "bcdefghij"]
    new_cd = entry + b"".join(extra)
    tail = bytearray(raw[eocd:])
    n = 1 + len(extra)
    tail[8:10] = n.to_bytes(2, "little")
    tail[10:12] = n.to_bytes(2, "little")
    tail[12:16] = len(new_cd).to_bytes(4, "little")
    tail[16:20] = cd.to_bytes(4, "little")
    path.write_bytes(bytes(raw[:cd]) + new_cd + bytes(tail))
    with pytest.raises(nd.MXNetFileError, match="more than the file"):
        I.Load(str(path))
