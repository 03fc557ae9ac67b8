"""Hostile ``.states`` files: each is refused with MXNetStatesError naming the cause,
without side effects and with memory bounded by the file's size."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import subprocess
import sys
import tracemalloc

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.mxnet_states import MXNetStatesError, load_states
from mxjax.nd._pickle import loads
from tests.helpers import REFERENCE

GOOD = (REFERENCE / "states" / "trainer_adam.states").read_bytes()



def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def refused(data: bytes, match: str) -> None:
    with pytest.raises(MXNetStatesError, match=match):
        loads(data)


@pytest.fixture
def sentinel(tmp_path, monkeypatch):
    """A path a hostile file would create; the test asserts it never appears."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "pwned"
    yield path
    assert not path.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_os_system_is_refused_without_running(sentinel, tmp_path_factory) -> None:
    data = glob("os", "system") + b"(S'touch pwned'\ntR."
    # pickle.loads runs it (in another directory): the sentinel can detect it.
    elsewhere = tmp_path_factory.mktemp("pickle_runs_it")
    code = f"import pickle; pickle.loads({data!r})"
    subprocess.run([sys.executable, "-c", code], cwd=elsewhere, check=True)
    assert (elsewhere / "pwned").exists()
    refused(data, "global os.system is not allowed")
    refused(pickle.dumps(os.system), "posix.system is not allowed")


def test_eval_and_builtins_are_refused(sentinel) -> None:
    refused(glob("builtins", "eval") + b"(S'open(\"pwned\",\"w\")'\ntR.", "builtins.eval")
    refused(glob("__builtin__", "exec") + b"(S'x'\ntR.", "__builtin__.exec")
    refused(b"\x80\x04" + b"\x8c\x08builtins\x8c\x04open\x93.", "builtins.open")


def test_getattr_chains_are_refused(sentinel) -> None:
    # getattr(__import__('os'), 'system')('touch pwned')
    data = glob("builtins", "getattr") + b"(" + glob("builtins", "__import__") + (
        b"(S'os'\ntRS'system'\ntR(S'touch pwned'\ntR."
    )
    refused(data, "builtins.getattr")
    # attribute access via a dotted name resolves nothing either
    refused(b"\x80\x04\x8c\x02os\x8c\x0bpath.system\x93.", "os.path.system")


def test_unknown_and_look_alike_classes_are_refused(sentinel) -> None:
    refused(glob("mxnet.optimizer.optimizer", "Updater") + b")\x81.", "Updater")
    refused(glob("mxnet.ndarray.ndarray", "load") + b"(S'pwned'\ntR.", "ndarray.load")
    refused(glob("collections", "OrderedDict") + b")R.", "collections.OrderedDict")
    refused(glob("numpy", "load") + b"(S'pwned'\ntR.", "numpy.load")
    # nothing is imported to resolve a name: a module never loaded stays unloaded
    assert "antigravity" not in sys.modules and "this" not in sys.modules
    refused(glob("antigravity", "geohash") + b")R.", "antigravity.geohash")
    refused(b"\x80\x04\x8c\x04this\x8c\x01s\x93.", "this.s")
    assert "antigravity" not in sys.modules and "this" not in sys.modules


def test_huge_constructor_arguments_are_refused() -> None:
    tracemalloc.start()
    try:
        refused(glob("builtins", "bytearray") + b"(I1000000000000\ntR.", "refused call")
        # a length prefix claiming 2**62 bytes
        refused(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"xx.", "truncated")
        refused(b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.", "frame")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_huge_memo_index_does_not_allocate() -> None:
    tracemalloc.start()
    try:
        data = b"\x80\x04N" + b"r" + struct.pack("<I", 2**31) + b"0" + b"h\x00."
        refused(data, "memo key 0 is unset")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_deep_nesting_is_refused() -> None:
    # (((...))) via TUPLE1: no stack growth while reading, 100000 levels deep.
    # pickle.loads of this as a dict key crashes CPython (hash recursion); here it is
    # refused before anything hashes it.
    deep = b"\x80\x04}N" + b"\x85" * 100_000 + b"K\x01s."
    refused(deep, "nesting deeper than 32")
    lists = b"\x80\x04" + b"]" * 50 + b"a" * 49 + b"."
    refused(lists, "nesting deeper than 32")


def test_shared_reference_bombs_are_refused() -> None:
    # billion laughs: each level a list holding the previous one 10 times
    parts = [b"\x80\x04N\x940"]  # memo 0 = None
    for i in range(30):
        parts.append(b"(" + (b"h" + bytes([i])) * 10 + b"t\x940")  # memo i+1
    parts.append(b"h\x1e.")  # 10**30 leaves when expanded, 330 bytes
    tracemalloc.start()
    try:
        refused(b"".join(parts), "shared-reference bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_self_reference_is_refused() -> None:
    refused(b"\x80\x04]\x94h\x00a.", "self-referencing")


@pytest.mark.parametrize("cut", [1, 7, 100, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated_files_are_refused(cut: int) -> None:
    refused(GOOD[:cut], "truncated|STOP|malformed")


def test_trailing_bytes_are_refused() -> None:
    refused(GOOD + b"junk", "trailing")


def test_wrong_record_magic_is_refused() -> None:
    magic = struct.pack("<I", 0xF993FAC9)
    assert magic in GOOD
    refused(GOOD.replace(magic, struct.pack("<I", 0xDEADBEEF), 1), "wrong NDArray record magic 0xdeadbeef")
    refused(GOOD.replace(magic, struct.pack("<I", 0xF993FACA), 1), "MXNet 2.0")


def test_unsupported_mxnet2_files_are_refused_by_name() -> None:
    """A real MXNet 2.0.0b1 Trainer file of Adam (tools/record_mxnet_states.py --mxnet2):
    mxjax's Adam follows 1.9.1, so the file is refused naming the class; a 2.0 payload
    without an optimizer (V3 arrays) is refused by loads and load_states."""
    real = (REFERENCE / "states" / "mxnet2_trainer_adam.states").read_bytes()
    refused(real, "mxnet.optimizer.adam.Adam is from an MXNet 2.0 file")
    adamw = (REFERENCE / "states" / "mxnet2_trainer_adamw.states").read_bytes()
    refused(adamw, "MXNet 2.0 .states payload")  # loads() is MXNet 1.9.1 only
    from mxjax.nd._pickle import decode, dumps

    v2 = dumps({0: np.ones(2, np.float32)})  # a dict of V3 arrays, as 2.0's Updater writes
    module_like = v2.replace(struct.pack("<I", 0xF993FAC9), struct.pack("<I", 0xF993FACA))
    assert isinstance(decode(module_like)[0], dict) and decode(module_like)[1]
    with pytest.raises(MXNetStatesError, match="MXNet 2.0 .states file"):
        load_states(module_like, {"w": jnp.zeros(2)}, optimizer=mx.optimizer.adamw(),
                    order=["w"], begin_num_update=0)
    refused(glob("mxnet.optimizer.adam", "Adam") + b")\x81.", "mxnet.optimizer.adam.Adam .*MXNet 2.0")
    refused(glob("mxnet.numpy", "ndarray") + b")R.", "MXNet 2.0")


def test_disallowed_opcodes_are_refused() -> None:
    refused(b"\x80\x04P1\n.", "PERSID")  # persistent id
    refused(b"\x80\x04\x82\x01.", "EXT1")  # copyreg extension registry
    refused(b"(" + b"cos\nsystem\n" + b"S'x'\no.", "os.system|OBJ")
    refused(b"\x80\x04\x8f\x94.", "EMPTY_SET")


def test_the_loader_reports_the_same_error(tmp_path) -> None:
    bad = tmp_path / "bad.states"
    bad.write_bytes(glob("os", "system") + b"(S'touch pwned'\ntR.")
    with pytest.raises(MXNetStatesError, match="os.system"):
        load_states(bad, {"w": jnp.zeros(2)}, optimizer=mx.optimizer.sgd(), order=["w"],
                    begin_num_update=0)
    assert sorted(os.listdir(tmp_path)) == ["bad.states"]


def test_random_corruptions_raise_only_the_states_error() -> None:
    """Seeded byte flips, cuts, insertions and splices of real files: each decodes or
    raises MXNetStatesError, never another exception (30000 runs were clean offline)."""
    import random

    files = sorted((REFERENCE / "states").glob("*.states"))
    rng = random.Random(17)
    for _ in range(300):
        d = bytearray(rng.choice(files).read_bytes())
        for _ in range(rng.randint(1, 4)):
            k, r = rng.randrange(len(d)), rng.random()
            if r < 0.5:
                d[k] = rng.randrange(256)
            elif r < 0.7:
                del d[k : k + rng.randint(1, 20)]
            elif r < 0.85:
                d[k:k] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                d[k:k] = d[rng.randrange(len(d)) :][: rng.randint(1, 50)]
        try:
            loads(bytes(d))
        except MXNetStatesError:
            pass


def test_hostile_values_in_a_valid_trainer_file(monkeypatch) -> None:
    """Well-formed pickles whose optimizer, scheduler or state values are of the wrong
    type or range: load_states raises MXNetStatesError and nothing else."""
    import random
    import warnings

    import numpy as np

    import mxjax.mxnet_states as ms
    from mxjax.nd._pickle import Record

    names = ["trainer_adam", "trainer_sgd_factor", "trainer_sgd_fp16", "trainer_nadam"]
    values = [None, -1, 0, 10**400, "x", [], {}, 1e308, float("nan"), (1, 2), True,
              np.ones(3, np.float32)]
    rng = random.Random(3)
    for _ in range(120):
        name = rng.choice(names)
        states, rec = loads((REFERENCE / "states" / f"{name}.states").read_bytes())
        sched = rec.attrs.get("lr_scheduler")
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if r < 0.6:
                rec.attrs[rng.choice(list(rec.attrs))] = rng.choice(values)
            elif r < 0.8 and isinstance(sched, Record):
                sched.attrs[rng.choice(list(sched.attrs))] = rng.choice(values)
            else:
                states[rng.choice(list(states))] = rng.choice(values)
        arrays = np.load(REFERENCE / "states" / f"{name}.npz")
        order = sorted(n.split("/")[1] for n in arrays.files if n.startswith("w0/"))
        params = {n: jnp.asarray(arrays[f"w0/{n}"]) for n in order}
        monkeypatch.setattr(ms, "decode", lambda data, o=(states, rec): (o, False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_states(b"", params)
            except MXNetStatesError:
                pass
