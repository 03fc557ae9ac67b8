"""mxjax.nd.load on truncated, corrupted and hostile input: one exception type, no big allocations."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxjax import nd
from mxjax.nd import MXNetFileError

HEADER = struct.pack("<QQ", 0x112, 0)
V2 = 0xF993FAC9


def file_of(records: list[bytes], names: list[str] | None = None) -> bytes:
    out = HEADER + struct.pack("<Q", len(records)) + b"".join(records)
    names = names or []
    out += struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n.encode())) + n.encode()
    return out


def record(
    shape, flag: int, data: bytes, *, magic: int = V2, stype: int = 0, dev: int = 1
) -> bytes:
    head = struct.pack("<I", magic)
    if magic == V2:
        head += struct.pack("<i", stype)
    head += struct.pack("<i", len(shape)) + struct.pack(f"<{len(shape)}q", *shape)
    return head + struct.pack("<iii", dev, 0, flag) + data


GOOD = nd.save_tobuffer(
    {
        "arg:w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1, 2], np.int64),
    }
)


def test_valid_handcrafted_file_loads():
    got = nd.load_frombuffer(
        file_of([record((2,), 0, struct.pack("<2f", 1.5, -2))], ["x"])
    )
    np.testing.assert_array_equal(got["x"], np.array([1.5, -2], np.float32))


def test_v1_and_pre_v1_records_load():
    v1 = (
        struct.pack("<Ii", 0xF993FAC8, 1)
        + struct.pack("<q", 2)
        + struct.pack("<iii", 1, 0, 4)
        + struct.pack("<2i", 7, -8)
    )
    legacy = (
        struct.pack("<I", 2)
        + struct.pack("<2I", 1, 2)
        + struct.pack("<iii", 1, 0, 5)
        + bytes([1, 255])
    )
    got = nd.load_frombuffer(file_of([v1, legacy]))
    np.testing.assert_array_equal(got[0], np.array([7, -8], np.int32))
    np.testing.assert_array_equal(got[1], np.array([[1, -1]], np.int8))


def test_bfloat16_records_load_and_save():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    raw = np.array([0x3FC0, 0xC010], "<u2").tobytes()  # 1.5, -2.25
    got = nd.load_frombuffer(file_of([record((2,), 12, raw)]))[0]
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(got.astype(np.float32), [1.5, -2.25])
    assert nd.save_tobuffer([got]) == file_of([record((2,), 12, raw)])


def test_gpu_context_record_loads_on_cpu():
    got = nd.load_frombuffer(file_of([record((1,), 0, struct.pack("<f", 3.0), dev=2)]))
    assert got[0][0] == 3.0


@pytest.mark.parametrize("cut", [0, 7, 8, 16, 23, 24, 30, 40, 60, len(GOOD) - 1])
def test_truncated_file_raises(cut):
    with pytest.raises(MXNetFileError):
        nd.load_frombuffer(GOOD[:cut])


def test_wrong_magic_raises():
    with pytest.raises(MXNetFileError, match="magic"):
        nd.load_frombuffer(b"PK\x03\x04" + GOOD[4:])


def test_huge_claimed_shape_is_refused_before_allocating():
    rec = record((2**40, 2**20), 1, b"")
    with pytest.raises(MXNetFileError, match="claims"):
        nd.load_frombuffer(file_of([rec]))


def test_huge_claimed_count_is_refused():
    with pytest.raises(MXNetFileError, match="count"):
        nd.load_frombuffer(HEADER + struct.pack("<Q", 2**63) + b"\0" * 16)


def test_huge_name_length_is_refused():
    buf = HEADER + struct.pack("<Q", 0) + struct.pack("<Q", 0)  # N=0, K=0 fine
    nd.load_frombuffer(buf)
    bad = file_of([record((1,), 0, b"\0" * 4)])[:-8] + struct.pack("<QQ", 1, 2**62)
    with pytest.raises(MXNetFileError, match="name 0"):
        nd.load_frombuffer(bad)


@pytest.mark.parametrize("ndim", [-1, 33, 2**31 - 1])
def test_bad_ndim_raises(ndim):
    rec = struct.pack("<Iii", V2, 0, ndim) + b"\0" * 64
    with pytest.raises(MXNetFileError, match="ndim"):
        nd.load_frombuffer(file_of([rec]))


def test_negative_dimension_raises():
    with pytest.raises(MXNetFileError, match="negative"):
        nd.load_frombuffer(file_of([record((-2,), 0, b"")]))


@pytest.mark.parametrize("flag", [8, 9, 10, 11, 13, -1, 2**31 - 1])
def test_unknown_dtype_code_raises(flag):
    with pytest.raises(MXNetFileError, match="dtype code"):
        nd.load_frombuffer(file_of([record((1,), flag, b"\0" * 8)]))


@pytest.mark.parametrize("stype,kind", [(1, "row_sparse"), (2, "csr"), (7, "unknown")])
def test_sparse_records_raise(stype, kind):
    with pytest.raises(MXNetFileError, match=kind):
        nd.load_frombuffer(file_of([record((1,), 0, b"\0" * 4, stype=stype)]))


def test_v3_records_raise():
    rec = (
        struct.pack("<Ii", 0xF993FACA, 0)
        + struct.pack("<i", 0)
        + struct.pack("<iii", 1, 0, 0)
        + b"\0" * 4
    )
    with pytest.raises(MXNetFileError, match="V3"):
        nd.load_frombuffer(file_of([rec]))


def test_none_ndarray_record_raises():
    with pytest.raises(MXNetFileError, match="none"):
        nd.load_frombuffer(file_of([struct.pack("<Iii", V2, 0, 0)]))


def test_unknown_device_raises():
    with pytest.raises(MXNetFileError, match="device"):
        nd.load_frombuffer(file_of([record((1,), 0, b"\0" * 4, dev=9)]))


def test_name_count_mismatch_trailing_bytes_and_bad_utf8_raise():
    rec = record((1,), 0, b"\0" * 4)
    with pytest.raises(MXNetFileError, match="name count"):
        nd.load_frombuffer(file_of([rec, rec], ["a"]))
    with pytest.raises(MXNetFileError, match="trailing"):
        nd.load_frombuffer(file_of([rec]) + b"\0")
    bad = file_of([rec])[:-8] + struct.pack("<QQ", 1, 1) + b"\xff"
    with pytest.raises(MXNetFileError, match="UTF-8"):
        nd.load_frombuffer(bad)
    with pytest.raises(MXNetFileError, match="duplicate"):
        nd.load_frombuffer(file_of([rec, rec], ["a", "a"]))


def test_mxnet_file_error_is_a_value_error():
    assert issubclass(MXNetFileError, ValueError)


def test_save_rejects_what_mxnet_cannot_store():
    with pytest.raises(ValueError, match="0-d"):
        nd.save_tobuffer([np.float32(1)])
    with pytest.raises(ValueError, match="zero-size"):
        nd.save_tobuffer([np.zeros((0, 3), np.float32)])
    with pytest.raises(TypeError, match="complex64"):
        nd.save_tobuffer([np.zeros(2, np.complex64)])
    with pytest.raises(TypeError, match="names must be str"):
        nd.save_tobuffer({1: np.zeros(2, np.float32)})


def test_big_endian_input_is_saved_little_endian():
    a = np.arange(3, dtype=">f4")
    assert nd.save_tobuffer([a]) == nd.save_tobuffer([a.astype("<f4")])


DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.uint8,
    np.int8,
    np.int32,
    np.int64,
    np.bool_,
]

arrays = st.builds(
    lambda dt, shape, seed: (
        np.random.default_rng(seed).integers(0, 2, size=shape).astype(dt)
        if dt == np.bool_
        else (np.random.default_rng(seed).standard_normal(shape) * 100).astype(dt)
    ),
    st.sampled_from(DTYPES),
    st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    st.integers(0, 2**32 - 1),
)
payloads = st.one_of(
    st.lists(arrays, max_size=4),
    st.dictionaries(st.text(max_size=8), arrays, min_size=1, max_size=4),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@FUZZ
@given(payloads)
def test_roundtrip_property(data):
    got = nd.load_frombuffer(nd.save_tobuffer(data))
    want = data if isinstance(data, list) else list(data.values())
    values = got if isinstance(got, list) else list(got.values())
    if isinstance(data, dict):
        assert list(got) == list(data)
    for g, w in zip(values, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def _load_or_file_error(buf: bytes) -> None:
    try:
        out = nd.load_frombuffer(buf)
    except MXNetFileError:
        return
    values = out if isinstance(out, list) else list(out.values())
    assert sum(v.nbytes for v in values) <= len(buf)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_file_error(buf):
    _load_or_file_error(buf)


@FUZZ
@given(payloads, st.data())
def test_fuzz_mutated_valid_files_only_raise_file_error(data, draw):
    buf = bytearray(nd.save_tobuffer(data))
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["flip", "cut", "insert", "int"]))
        pos = draw.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= draw.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = draw.draw(st.binary(min_size=1, max_size=8))
        elif op == "int" and len(buf) >= pos + 8:
            buf[pos : pos + 8] = struct.pack(
                "<q", draw.draw(st.sampled_from([-1, 0, 2**31, 2**62, 2**63 - 1]))
            )
    _load_or_file_error(bytes(buf))
