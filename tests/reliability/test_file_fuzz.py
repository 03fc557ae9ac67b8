"""Untrusted files: ``mx.nd.load`` (on paths), ``mx.initializer.Load`` (``.params`` and
``.npz`` paths) and ``mxjax.checkpoint.load``/``describe``, on generated and mutated
files. Only the documented exception comes out, nothing is unpickled, and a header
claiming a huge shape fails fast without allocating it.

``tests/nd/test_nd_hostile.py`` fuzzes ``nd.load_frombuffer`` byte by byte; this adds
the path readers, the ``.npz`` reader behind ``Load`` and checkpoints, and checkpoint
descriptions.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import time
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxjax as mx
from mxjax import checkpoint, nd
from mxjax.checkpoint import CheckpointError
from mxjax.nd import MXNetFileError

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npz(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return buf.getvalue()


def huge_npy(shape=(2**40,), descr="<f4") -> bytes:
    """A valid .npy header claiming ``shape`` (2**40 floats: 4 TiB), 16 data bytes."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 16


class Bomb:
    def __reduce__(self):  # unpickling this would raise: proof nothing is unpickled
        return (pytest.fail, ("a file was unpickled",))


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([Bomb()], dtype=object), allow_pickle=True)
    return buf.getvalue()


# ------------------------------------------------------------------- readers under test


def read_nd(path):
    try:
        nd.load(path)
    except MXNetFileError:
        pass


def read_load(path):
    try:
        mx.initializer.Load(str(path))
    except MXNetFileError:
        pass


PARAMS = {"fc_weight": jnp.ones((3, 2)), "fc_bias": jnp.zeros(2)}
OPT = mx.optimizer.adam(learning_rate=0.1)


def good_checkpoint(tmp) -> bytes:
    path = tmp / "good.npz"
    state = OPT.init(PARAMS)
    checkpoint.save(path, state, PARAMS, optimizer=OPT)
    return path.read_bytes()


def read_checkpoint(path):
    try:
        checkpoint.describe(path)
    except CheckpointError:
        return
    try:
        checkpoint.load(path, optimizer=OPT, like_params=PARAMS)
    except CheckpointError:
        pass
    except ValueError as e:  # a readable checkpoint that does not match the templates
        assert any(
            s in str(e)
            for s in ("tree differs", "the checkpoint has shape", "optimizer")
        ), e


# ------------------------------------------------------------------------- fixed cases


HOSTILE_NPZ = {
    "huge claimed shape": npz({"fc_weight.npy": huge_npy()}),
    "huge 2-D shape": npz({"fc_weight.npy": huge_npy((2**20, 2**20))}),
    "unknown dtype": npz({"fc_weight.npy": huge_npy((2,), "<q9")}),
    "object dtype (pickle)": npz({"fc_weight.npy": _object_npy()}),
    "wrong npy magic": npz({"fc_weight.npy": b"\x93NUMPX" + npy(np.ones(2))[6:]}),
    "wrong zip magic": b"PK\x05\x07" + npz({"a.npy": npy(np.ones(2))})[4:],
    "truncated": npz({"fc_weight.npy": npy(np.ones(8))})[:-30],
    "trailing data in member": npz({"fc_weight.npy": npy(np.ones(2)) + b"\0" * 8}),
    "short member": npz({"fc_weight.npy": npy(np.ones(4))[:-4]}),
    "not npy member": npz({"fc_weight.txt": b"1 2 3"}),
    "pickle file": pickle.dumps({"fc_weight": np.ones(2)}),
    "empty": b"",
}


@pytest.mark.parametrize("case", list(HOSTILE_NPZ))
def test_hostile_npz_for_load_and_checkpoint(tmp_path, case):
    path = tmp_path / "x.npz"
    path.write_bytes(HOSTILE_NPZ[case])
    t = time.perf_counter()
    with pytest.raises(MXNetFileError):
        mx.initializer.Load(str(path))
    with pytest.raises(CheckpointError):
        checkpoint.load(path, optimizer=OPT, like_params=PARAMS)
    assert time.perf_counter() - t < 2.0  # fails fast: nothing huge was allocated


def test_huge_shape_is_refused_before_allocating(tmp_path, monkeypatch):
    """numpy's own reader would call np.ndarray(2**40); ours never reaches it."""
    path = tmp_path / "x.npz"
    path.write_bytes(HOSTILE_NPZ["huge claimed shape"])
    real = np.ndarray

    def guarded(shape, *a, **k):
        n = np.prod(shape, dtype=object) if not isinstance(shape, int) else shape
        assert n < 2**30, f"allocation of {shape} attempted"
        return real(shape, *a, **k)

    monkeypatch.setattr(np, "ndarray", guarded)
    with pytest.raises(MXNetFileError, match="claims"):
        mx.initializer.Load(str(path))
    with pytest.raises(CheckpointError, match="claims"):
        checkpoint.describe(path)


def test_a_valid_npz_still_loads(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, fc_weight=np.arange(6.0).reshape(2, 3))
    np.savez_compressed(tmp_path / "okc.npz", fc_weight=np.arange(6.0).reshape(2, 3))
    for p in (path, tmp_path / "okc.npz"):
        got = mx.initializer.Load(str(p)).param["fc_weight"]
        np.testing.assert_array_equal(got, np.arange(6.0).reshape(2, 3))


def test_hostile_params_file_for_load(tmp_path):
    path = tmp_path / "x.params"
    good = nd.save_tobuffer({"fc_weight": np.ones((2, 2), np.float32)})
    # the first record's shape: header (24 bytes) + magic, stype, ndim -> dims at 36
    bad = bytearray(good)
    bad[36:44] = struct.pack("<q", 2**40)
    for blob in (bytes(bad), good[:-3], b"\x13\x01" + good[2:], good[:30]):
        path.write_bytes(blob)
        with pytest.raises(MXNetFileError):
            mx.initializer.Load(str(path))
        with pytest.raises(MXNetFileError):
            nd.load(path)


@pytest.mark.parametrize(
    "meta",
    [
        {
            "format": "mxjax.checkpoint",
            "version": 1,
            "optimizer": "adam",
            "state": [],
            "params": None,
        },
        {
            "format": "mxjax.checkpoint",
            "version": 1,
            "optimizer": None,
            "state": [{"key_impl": 3}],
            "params": None,
        },
        {
            "format": "mxjax.checkpoint",
            "version": 1,
            "optimizer": None,
            "state": [{"path": "[0]", "shape": [-1], "dtype": "float32"}],
            "params": None,
        },
        {
            "format": "mxjax.checkpoint",
            "version": 1,
            "optimizer": None,
            "state": 5,
            "params": None,
        },
        {
            "format": "mxjax.checkpoint",
            "version": 1,
            "optimizer": None,
            "state": [
                {"path": ".count", "shape": [], "dtype": "int32", "key_impl": "nope"}
            ],
            "params": None,
        },
        {"format": "mxjax.checkpoint", "version": 2},
        [1, 2],
    ],
)
def test_hostile_checkpoint_descriptions(tmp_path, meta):
    path = tmp_path / "c.npz"
    members = {
        "__mxjax_checkpoint__.npy": npy(
            np.frombuffer(json.dumps(meta).encode(), np.uint8)
        )
    }
    members["state_0.npy"] = npy(np.zeros((), np.int32))
    path.write_bytes(npz(members))
    with pytest.raises(CheckpointError):
        checkpoint.load(path, like_state=OPT.init(PARAMS))


# ------------------------------------------------------------------------------ fuzzing


def mutate(data: st.DataObject, buf: bytes) -> bytes:
    b = bytearray(buf)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "int"]))
        pos = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "int" and len(b) >= pos + 8:
            b[pos : pos + 8] = struct.pack(
                "<q",
                data.draw(st.sampled_from([-1, 0, 2**31, 2**40, 2**62, 2**63 - 1])),
            )
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_fuzz_params_files_for_nd_load_and_load(tmp_path_factory, data):
    arrays = data.draw(
        st.dictionaries(
            st.sampled_from(["fc_weight", "arg:fc_bias", "aux:bn_moving_mean"]),
            st.lists(st.integers(1, 3), min_size=1, max_size=3).map(
                lambda s: np.ones(s, np.float32)
            ),
            min_size=1,
        )
    )
    path = tmp_path_factory.mktemp("p") / "x.params"
    path.write_bytes(mutate(data, nd.save_tobuffer(arrays)))
    read_nd(path)
    read_load(path)


@FUZZ
@given(data=st.data())
def test_fuzz_npz_files_for_load(tmp_path_factory, data):
    shape = tuple(data.draw(st.lists(st.integers(0, 3), max_size=3)))
    dtype = data.draw(st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", ">f4"]))
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    blob = npz({"fc_weight.npy": npy(np.zeros(shape, dtype))}, method)
    path = tmp_path_factory.mktemp("z") / "x.npz"
    path.write_bytes(mutate(data, blob))
    read_load(path)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_files(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("c")
    path = tmp / "m.npz"
    path.write_bytes(mutate(data, good_checkpoint(tmp)))
    read_checkpoint(path)


@FUZZ
@given(
    data=st.data(),
    meta=st.recursive(
        st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=6),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "format",
                        "version",
                        "optimizer",
                        "state",
                        "params",
                        "path",
                        "shape",
                        "dtype",
                        "key_impl",
                        "stored_as",
                        "name",
                        "hyperparams",
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=12,
    ),
)
def test_fuzz_checkpoint_descriptions(tmp_path_factory, data, meta):
    if isinstance(meta, dict) and data.draw(st.booleans()):
        meta = {**meta, "format": "mxjax.checkpoint", "version": 1}
    path = tmp_path_factory.mktemp("d") / "d.npz"
    members = {
        "__mxjax_checkpoint__.npy": npy(
            np.frombuffer(json.dumps(meta).encode(), np.uint8)
        ),
        "state_0.npy": npy(np.zeros((), np.int32)),
    }
    path.write_bytes(npz(members))
    read_checkpoint(path)
