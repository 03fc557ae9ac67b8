"""mxjax.nd against files written and read by MXNet 1.9.1 (tools/record_mxnet_initializers.py)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from mxjax import nd

REF = pathlib.Path(__file__).parents[1] / "reference" / "nd"
META = json.loads((REF / "meta.json").read_text())
FILES = ["mx_dict", "mx_list", "mx_single", "mx_empty_dict"]


def expected(stem: str) -> list[np.ndarray]:
    with np.load(REF / "mx_expected.npz") as z:
        return [z[f"{stem}_{i}"] for i in range(len(META[stem]["dtypes"]))]


@pytest.mark.parametrize("stem", FILES)
def test_load_reads_mxnet_files_exactly(stem):
    got = nd.load(REF / f"{stem}.params")
    meta = META[stem]
    want = expected(stem)
    if meta["kind"] == "dict":
        assert isinstance(got, dict)
        assert list(got) == meta["names"]
        values = list(got.values())
    else:
        assert isinstance(got, list)
        values = got
    assert [v.dtype.name for v in values] == meta["dtypes"]
    assert len(values) == len(want)
    for g, w in zip(values, want, strict=False):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("stem", FILES)
def test_save_writes_the_same_bytes_as_mxnet(stem):
    meta, want = META[stem], expected(stem)
    data = dict(zip(meta["names"], want, strict=False)) if meta["kind"] == "dict" else want
    if stem == "mx_single":
        data = want[0]
    assert nd.save_tobuffer(data) == (REF / f"{stem}.params").read_bytes()


def test_mxnet_reads_back_what_mxjax_wrote():
    names = json.loads((REF / "from_mxjax_source.json").read_text())["names"]
    with np.load(REF / "from_mxjax_source.npz") as z:
        source = {n: z[f"a{i}"] for i, n in enumerate(names)}
    # the committed file is still what nd.save writes today
    assert nd.save_tobuffer(source) == (REF / "from_mxjax.params").read_bytes()
    meta = META["from_mxjax_readback"]
    assert meta["kind"] == "dict" and meta["names"] == names
    with np.load(REF / "from_mxjax_readback.npz") as z:
        for i, name in enumerate(names):
            back = z[f"a{i}"]
            assert (
                back.dtype == source[name].dtype
                and back.dtype.name == meta["dtypes"][i]
            )
            np.testing.assert_array_equal(back, source[name])


def test_save_then_load_roundtrips_a_file(tmp_path):
    data = {
        "arg:w": np.arange(6, dtype=np.float16).reshape(2, 3),
        "b": np.array([True]),
    }
    nd.save(tmp_path / "x.params", data)
    got = nd.load(tmp_path / "x.params")
    assert list(got) == list(data)
    for k in data:
        assert got[k].dtype == data[k].dtype
        np.testing.assert_array_equal(got[k], data[k])
