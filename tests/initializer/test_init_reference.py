"""Replay of MXNet 1.9.1 recordings (tools/record_mxnet_initializers.py) for mxjax.initializer."""

from __future__ import annotations

import json
import math
import pathlib
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax.initializer as I

REF = pathlib.Path(__file__).parents[1] / "reference" / "initializer"
CASES = json.loads((REF / "cases.json").read_text())
KEY = jax.random.key(0)


def build(spec: dict) -> I.Initializer:
    return getattr(I, spec["cls"])(**spec["kwargs"])


def ids(cases, *fields):
    return ["-".join(str(c[f]) for f in fields) for c in cases]


@pytest.mark.parametrize(
    "case", CASES["constant"], ids=ids(CASES["constant"], "init", "shape")
)
def test_constant_matches_mxnet(case):
    init = build(case["init"])
    if "error" in case:
        with pytest.raises(ValueError, match="broadcast"):
            init(KEY, case["shape"])
    else:
        np.testing.assert_array_equal(
            init(KEY, case["shape"]), np.float32(case["value"])
        )
        np.testing.assert_array_equal(
            init.init_named("fc_weight", KEY, case["shape"]), np.float32(case["value"])
        )


@pytest.mark.parametrize("case", CASES["bilinear"], ids=ids(CASES["bilinear"], "shape"))
def test_bilinear_matches_mxnet(case):
    if "error" in case:
        with pytest.raises(ValueError, match="4-D"):
            I.Bilinear()(KEY, case["shape"])
    else:
        np.testing.assert_array_equal(
            I.Bilinear()(KEY, case["shape"]), np.float32(case["value"])
        )


def test_bilinear_4x4_first_row_is_documented_value():
    np.testing.assert_array_equal(
        I.Bilinear()(KEY, (1, 1, 4, 4))[0, 0, 0], [0.0625, 0.1875, 0.1875, 0.0625]
    )


@pytest.mark.parametrize(
    "case", CASES["lstmbias"], ids=ids(CASES["lstmbias"], "forget_bias", "shape")
)
def test_lstmbias_weight_rule_and_name_dispatch_match_mxnet(case):
    init = I.LSTMBias(case["forget_bias"])
    np.testing.assert_array_equal(
        init(KEY, case["shape"]), np.float32(case["weight_rule"]["value"])
    )
    np.testing.assert_array_equal(
        init.init_named("lstm_i2h_bias", KEY, case["shape"]),
        np.float32(case["by_name"]["value"]),
    )
    got = I.init_params(
        I.Zero(),
        KEY,
        {"lstm_i2h_bias": tuple(case["shape"])},
        per_param={"lstm_i2h_bias": init},
    )
    np.testing.assert_array_equal(
        got["lstm_i2h_bias"], np.float32(case["weight_rule"]["value"])
    )


class Positional(I.Initializer):
    """The recorder's inner initializer: crc32(name) % 100 + arange(size) / 1000."""

    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def _init_weight(self, name, key, shape, dtype, global_init):
        self.seen.append([name, list(shape)])
        base = zlib.crc32(name.encode()) % 100
        vals = (
            base + np.arange(math.prod(shape), dtype=np.float64).reshape(shape) / 1000
        )
        return jnp.asarray(vals.astype(np.float32), dtype)


@pytest.mark.parametrize(
    "case",
    CASES["fusedrnn"],
    ids=ids(CASES["fusedrnn"], "mode", "num_layers", "bidirectional", "inner"),
)
def test_fusedrnn_layout_matches_mxnet(case):
    seen: list = []
    args = (case["num_hidden"], case["num_layers"], case["mode"], case["bidirectional"])
    if case["inner"] == "positional":
        fused = I.FusedRNN(Positional(seen), *args, forget_bias=case["forget_bias"])
        got = fused(KEY, (case["size"],))
    elif case["inner"] == "global":
        fused = I.FusedRNN(None, *args, forget_bias=case["forget_bias"])
        got = I.init_params(
            Positional(seen),
            KEY,
            {"parameters": (case["size"],)},
            per_param={"parameters": fused},
        )["parameters"]
    else:
        fused = I.FusedRNN(I.Constant(0.5), *args)
        got = fused(KEY, (case["size"],))
        assert fused.dumps() == case["dumps"]
    np.testing.assert_array_equal(got, np.float32(case["value"]))
    assert seen == case["weight_pieces"]  # per-gate shapes [Q31]


def test_fusedrnn_lstm_forget_bias_is_doubled_q30():
    case = next(
        c
        for c in CASES["fusedrnn"]
        if c["mode"] == "lstm"
        and c["inner"] == "constant"
        and c["num_layers"] == 1
        and not c["bidirectional"]
    )
    value = np.float32(case["value"])
    h = case["num_hidden"]
    biases = value[-8 * h :].reshape(2, 4, h)  # i2h then h2h, gates i f c o
    np.testing.assert_array_equal(biases[:, 1], 1.0)
    np.testing.assert_array_equal(
        I.FusedRNN(I.Constant(0.5), 2, 1, "lstm")(KEY, (case["size"],)), value
    )


def test_fusedrnn_bad_size_raises_like_mxnet():
    assert CASES["fusedrnn_bad_size"]["error"] == "AssertionError"
    with pytest.raises(ValueError, match="size 57"):
        I.FusedRNN(I.One(), 2, 1, "lstm")(KEY, (57,))


def test_fusedrnn_str_init_works_where_mxnet_raises():
    assert (
        CASES["fusedrnn_str_init"]["error"] == "KeyError"
    )  # a 1.9.1 bug we do not copy
    fused = I.FusedRNN('["one", {}]', 2, 1, "gru")
    assert fused.init == I.One()


@pytest.mark.parametrize(
    "case", CASES["mixed"], ids=ids(CASES["mixed"], "patterns", "name")
)
def test_mixed_matches_mxnet_q32(case):
    mixed = I.Mixed(case["patterns"], [build(s) for s in case["inits"]])
    if "error" in case:
        with pytest.raises(ValueError, match=case["name"]):
            mixed.init_named(case["name"], KEY, case["shape"])
    else:
        got = I.init_params(mixed, KEY, {case["name"]: tuple(case["shape"])})[
            case["name"]
        ]
        np.testing.assert_array_equal(got, np.float32(case["value"]))


@pytest.mark.parametrize("source", ["params", "dict", "npz"])
@pytest.mark.parametrize(
    "case",
    CASES["load"],
    ids=[f"{c['name']}-{c['shape']}-{c['default'] is not None}" for c in CASES["load"]],
)
def test_load_matches_mxnet(case, source, tmp_path):
    from mxjax import nd

    path = REF / "load_dict.params"
    if source == "params":
        param = path
    elif source == "dict":
        param = nd.load(path)
    else:
        param = tmp_path / "p.npz"
        np.savez(param, **nd.load(path))
    default = build(case["default"]) if case["default"] else None
    load = I.Load(param, default_init=default)
    if "error" in case:
        match = "Shape mismatch" if "Shape" in case["message"] else "Cannot initialize"
        with pytest.raises(ValueError, match=match) as info:
            load.init_named(case["name"], KEY, case["shape"])
        assert case["name"] in str(info.value)
    else:
        # one name at a time, as MXNet's Load(desc, arr) (init_params refuses a
        # file none of whose names is a parameter)
        got = load.init_named(case["name"], KEY, tuple(case["shape"]))
        np.testing.assert_array_equal(got, np.float32(case["value"]))


def test_load_list_file_raises_clear_error():
    assert CASES["load_list_file"]["error"] == "AssertionError"
    with pytest.raises(ValueError, match="list of 4"):
        I.Load(REF / "load_list.params")


def test_load_verbose_logs(caplog):
    load = I.Load({"arg:a_weight": np.ones(2)}, default_init=I.Zero(), verbose=True)
    with caplog.at_level("INFO", logger="mxjax.initializer"):
        I.init_params(load, KEY, {"a_weight": (2,), "b_weight": (2,)})
    assert "Initialized a_weight by loading" in caplog.text
    assert "Initialized b_weight by default" in caplog.text


MOVING = ("moving_mean", "moving_var", "moving_inv_var", "moving_avg")


@pytest.mark.parametrize(
    "case", CASES["dispatch"], ids=[c["name"] or "<empty>" for c in CASES["dispatch"]]
)
def test_name_dispatch_matches_mxnet_q27(case):
    init = I.Constant(3)
    if "value" in case:
        expected = case["value"]
    elif case["name"].endswith(
        MOVING
    ):  # BatchNorm aux states follow MXNet's legacy path
        expected = case["legacy"]["value"]
    else:
        with pytest.raises(ValueError, match="Unknown initialization pattern"):
            init.init_named(case["name"], KEY, case["shape"])
        with pytest.raises(ValueError, match=repr(case["name"])):
            I.init_params(init, KEY, {case["name"]: tuple(case["shape"])})
        return
    np.testing.assert_array_equal(
        init.init_named(case["name"], KEY, case["shape"]), np.float32(expected)
    )
    got = I.init_params(init, KEY, {case["name"]: tuple(case["shape"])})[case["name"]]
    np.testing.assert_array_equal(got, np.float32(expected))


SCALED = [c for c in CASES["scales"] if c["init"]["cls"] in ("Xavier", "MSRAPrelu")]


@pytest.mark.parametrize("case", SCALED, ids=ids(SCALED, "init", "shape"))
def test_xavier_scale_matches_mxnet(case):
    init = build(case["init"])
    shape = tuple(case["shape"])
    if "error" in case:
        with pytest.raises(ValueError, match="at least 2D"):
            init(KEY, shape)
        return
    kind, low, high = case["draw"]
    expected_kind = "uniform" if init.rnd_type == "uniform" else "normal"
    assert kind == expected_kind
    np.testing.assert_allclose(init.scale(shape), high, rtol=1e-12)
    # flax layout: (in, out) / HWIO with in_axis=-2, out_axis=-1 gives the same fans
    flax_shape = (*shape[2:], shape[1], shape[0])
    flax_init = getattr(I, case["init"]["cls"])(
        **case["init"]["kwargs"], in_axis=-2, out_axis=-1
    )
    np.testing.assert_allclose(flax_init.scale(flax_shape), high, rtol=1e-12)
    if kind == "uniform":
        assert np.abs(np.asarray(init(KEY, shape))).max() <= high


@pytest.mark.parametrize(
    "case",
    [c for c in CASES["scales"] if c["init"]["cls"] in ("Uniform", "Normal")][:2],
)
def test_uniform_normal_draw_parameters_match_mxnet(case):
    init = build(case["init"])
    kind, a, b = case["draw"]
    if kind == "uniform":
        assert (-init.scale, init.scale) == (a, b)
    else:
        assert (0.0, init.sigma) == (a, b)


@pytest.mark.parametrize(
    "case", CASES["moments"], ids=ids(CASES["moments"], "init", "shape")
)
def test_moments_match_mxnet_within_3_percent(case):
    init = build(case["init"])
    x = np.asarray(init(jax.random.key(1), tuple(case["shape"])), np.float64)
    assert x.std() == pytest.approx(case["std"], rel=0.03)
    assert abs(x.mean() - case["mean"]) <= 0.03 * case["std"]
    bounded = case["init"]["cls"] == "Uniform" or (
        case["init"]["cls"] == "Xavier" and init.rnd_type == "uniform"
    )
    if bounded:
        assert x.min() == pytest.approx(case["min"], rel=0.03)
        assert x.max() == pytest.approx(case["max"], rel=0.03)


@pytest.mark.parametrize("case", CASES["dumps"], ids=ids(CASES["dumps"], "init"))
def test_dumps_matches_mxnet(case):
    assert build(case["init"]).dumps() == case["dumps"]
    assert I.create(case["dumps"]).dumps() == case["dumps"]


@pytest.mark.parametrize(
    "case", CASES["create"], ids=[c["text"] for c in CASES["create"]]
)
def test_create_matches_mxnet(case):
    if "error" in case:
        if (
            case["error"] == "KeyError"
        ):  # MXNet's FusedRNN string-init bug: we create it
            assert isinstance(I.create(case["text"]), I.FusedRNN)
        else:
            with pytest.raises(ValueError, match="nosuchinit"):
                I.create(case["text"])
        return
    got = I.create(case["text"])
    assert type(got).__name__ == case["cls"]
    assert got.dumps() == case["dumps"]
