"""The file format: no pickle, bfloat16 as uint16 bits, hyperparameters as JSON, and
one exception type for unreadable files."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax import checkpoint
from mxjax.adapters import from_optax
from mxjax.checkpoint import CheckpointError


def saved_adam(tmp_path, **kwargs):
    opt = mx.optimizer.create("adam", learning_rate=0.1, **kwargs)
    params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4)}
    params, state = opt.update(params, opt.init(params), params)
    path = tmp_path / "adam.npz"
    checkpoint.save(path, state, params, optimizer=opt)
    return path, opt, params, state


def rewrite(path, edit):
    """Rewrite a checkpoint's zip entries through ``edit(name, bytes) -> bytes``."""
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in entries.items():
            zf.writestr(n, edit(n, data))


def edit_meta(path, change):
    def edit(name, data):
        if not name.startswith("__mxjax_checkpoint__"):
            return data
        arr = np.load(io.BytesIO(data))
        meta = json.loads(arr.tobytes())
        change(meta)
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buf.getvalue()

    rewrite(path, edit)


def test_bfloat16_round_trips_as_uint16_bits(tmp_path):
    special = np.array([0.0, -0.0, 1.0, np.inf, -np.inf, np.nan, 1e-40, 3.4e38])
    w = jnp.asarray(special, jnp.bfloat16)
    opt = mx.optimizer.create("sgd", momentum=0.9, multi_precision=True)
    state = opt.init({"w": w})
    checkpoint.save(tmp_path / "bf16.npz", state, {"w": w}, optimizer=opt)
    with np.load(tmp_path / "bf16.npz", allow_pickle=False) as raw:
        assert raw["params_0"].dtype == np.uint16
    spec = checkpoint.describe(tmp_path / "bf16.npz")["params"][0]
    assert spec == {
        "path": "['w']",
        "shape": [8],
        "dtype": "bfloat16",
        "stored_as": "uint16",
    }
    ckpt = checkpoint.load(tmp_path / "bf16.npz", optimizer=opt, like_params={"w": w})
    assert ckpt.params["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(ckpt.params["w"]).view(np.uint16), np.asarray(w).view(np.uint16)
    )


def test_hyperparams_are_json_with_address_free_reprs(tmp_path):
    def my_schedule(n):
        return 0.1 / n

    opt = mx.optimizer.create("sgd", learning_rate=my_schedule, lr_mult={"w": 0.5})
    # mxjax's own optimizers refuse non-finite hyperparameters; a user's may hold one.
    opt = dataclasses.replace(opt, hyperparams={**opt.hyperparams, "bound": float("inf")})
    params = {"w": jnp.ones(2)}
    checkpoint.save(tmp_path / "h.npz", opt.init(params), optimizer=opt)
    hp = checkpoint.describe(tmp_path / "h.npz")["optimizer"]["hyperparams"]
    lr = hp["learning_rate"]["__repr__"]
    assert "my_schedule" in lr and " at 0x" not in lr
    assert hp["lr_mult"] == {"w": 0.5}
    assert hp["bound"] == {"__float__": "inf"}


def test_no_pickle_is_ever_loaded(tmp_path):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    np.savez(path, __mxjax_checkpoint__=np.array([Evil()], dtype=object))
    with pytest.raises(CheckpointError):
        checkpoint.load(path, like_state={"a": jnp.ones(1)})
    assert not marker.exists()


def test_save_refuses_object_leaves(tmp_path):
    with pytest.raises(TypeError, match="object"):
        checkpoint.save(tmp_path / "o.npz", {"a": np.array([None], dtype=object)})


def test_save_leaves_no_temporary_file(tmp_path):
    saved_adam(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adam.npz"]


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, 0.999])
def test_truncated_file_raises_checkpoint_error(tmp_path, fraction):
    path, opt, params, _ = saved_adam(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="adam.npz"):
        checkpoint.load(path, optimizer=opt, like_params=params)


def test_flipped_byte_in_array_data_raises_checkpoint_error(tmp_path):
    path, opt, params, _ = saved_adam(tmp_path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("state_1.npy")
    data = bytearray(path.read_bytes())
    end = (
        info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size
    )
    data[end - 3] ^= 0x40  # inside the last element's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        checkpoint.load(path, optimizer=opt, like_params=params)


def test_garbage_and_foreign_npz_raise_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00not a zip file" * 10)
    with pytest.raises(CheckpointError):
        checkpoint.describe(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(CheckpointError, match="not an mxjax checkpoint"):
        checkpoint.describe(foreign)


def test_newer_format_version_raises_checkpoint_error(tmp_path):
    path, *_ = saved_adam(tmp_path)
    edit_meta(path, lambda m: m.update(version=99))
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.describe(path)


def test_description_disagreeing_with_array_raises_checkpoint_error(tmp_path):
    path, opt, params, _ = saved_adam(tmp_path)
    edit_meta(path, lambda m: m["params"][0].update(shape=[4, 3]))
    with pytest.raises(CheckpointError, match="does not match its description"):
        checkpoint.load(path, optimizer=opt, like_params=params)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.describe(tmp_path / "nope.npz")


def test_typed_prng_keys_round_trip(tmp_path):
    keys = jax.random.split(jax.random.key(7), 3)
    state = {"key": keys, "count": jnp.asarray(3, jnp.int32)}
    checkpoint.save(tmp_path / "k.npz", state)
    spec = checkpoint.describe(tmp_path / "k.npz")["state"][1]
    assert spec["key_impl"] == "threefry2x32" and spec["shape"] == [3]
    like = jax.eval_shape(lambda: state)
    got = checkpoint.load(tmp_path / "k.npz", like_state=like).state
    assert got["key"].dtype == keys.dtype
    np.testing.assert_array_equal(
        jax.random.key_data(got["key"]), jax.random.key_data(keys)
    )
    bad = {"key": jax.random.split(jax.random.key(0), 4), "count": state["count"]}
    with pytest.raises(ValueError, match=r"state leaf \['key'\].*shape \(3,\)"):
        checkpoint.load(tmp_path / "k.npz", like_state=bad)


def test_from_optax_state_round_trips(tmp_path):
    opt = from_optax(optax.adamw(1e-2), hyperparams={"learning_rate": 1e-2})
    params = {"w": jnp.linspace(0.0, 1.0, 4)}
    params, state = opt.update({"w": jnp.ones(4)}, opt.init(params), params)
    checkpoint.save(tmp_path / "o.npz", state, params, optimizer=opt)
    ckpt = checkpoint.load(tmp_path / "o.npz", optimizer=opt, like_params=params)
    assert jax.tree.structure(ckpt.state) == jax.tree.structure(state)
    for got, want in zip(
        jax.tree.leaves(ckpt.state), jax.tree.leaves(state), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert int(ckpt.state[0].count) == 1  # optax's ScaleByAdamState
