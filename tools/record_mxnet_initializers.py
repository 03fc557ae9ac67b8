"""Record MXNet 1.9.1's initializers and ``.params`` files for mxjax's tests. Run by hand.

Two steps, in this order:

    python3 tools/record_mxnet_initializers.py --write-mxjax
        (mxjax's env) writes tests/reference/nd/from_mxjax.params with ``mxjax.nd.save``
        from arrays built here with numpy (also saved, by numpy, as from_mxjax_source.npz).
    /work/mxref/bin/python tools/record_mxnet_initializers.py
        (real MXNet 1.9.1) records tests/reference/initializer/cases.json (+ load_*.params)
        and tests/reference/nd/ (MXNet-written .params, their expected arrays, and what MXNet
        read back from from_mxjax.params).

Nothing in mxjax imports MXNet; the tests only replay these files.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT_DIR = os.path.join(ROOT, "tests", "reference", "initializer")
ND_DIR = os.path.join(ROOT, "tests", "reference", "nd")


def source_arrays() -> dict[str, np.ndarray]:
    """The arrays of from_mxjax.params (one per dtype MXNet 1.9.1 can read)."""
    return {
        "arg:fc_weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "arg:fc_bias": np.array([1e-8, -3.5, 65504.0], np.float64),
        "aux:bn_moving_var": np.array([[0.5, -1.25], [7.0, 1e-3]], np.float16),
        "u8": np.array([0, 1, 254, 255], np.uint8),
        "i8": np.array([[-128, -1], [0, 127]], np.int8),
        "i32": np.array([-(2**31), 0, 2**31 - 1], np.int32).reshape(3, 1),
        "i64": np.array([-(2**62), 2**40 + 3], np.int64),
        "conv_weight": np.linspace(-1, 1, 2 * 3 * 2 * 2, dtype=np.float32).reshape(
            2, 3, 2, 2
        ),
    }


def write_mxjax() -> None:
    sys.path.insert(0, ROOT)
    from mxjax import nd

    os.makedirs(ND_DIR, exist_ok=True)
    src = source_arrays()
    np.savez(
        os.path.join(ND_DIR, "from_mxjax_source.npz"),
        **{f"a{i}": v for i, v in enumerate(src.values())},
    )
    with open(os.path.join(ND_DIR, "from_mxjax_source.json"), "w") as f:
        json.dump({"names": list(src)}, f, indent=1)
    nd.save(os.path.join(ND_DIR, "from_mxjax.params"), src)
    print("wrote", os.path.join(ND_DIR, "from_mxjax.params"))


# --------------------------------------------------------------------------- MXNet side


def record_mxnet() -> None:
    import mxnet as mx
    import mxnet.initializer as mxinit

    mx.random.seed(0)
    np.random.seed(0)
    warnings.simplefilter("ignore")

    def err(e: BaseException) -> dict:
        return {"error": type(e).__name__, "message": str(e)}

    def run(init, name, shape, attrs=None, global_init=None):
        arr = mx.nd.zeros(shape)
        try:
            init(mx.init.InitDesc(name, attrs, global_init), arr)
        except Exception as e:  # noqa: BLE001
            return err(e)
        return {"value": arr.asnumpy().tolist()}

    def spec(cls: str, **kwargs) -> dict:
        return {"cls": cls, "kwargs": kwargs}

    def build(s: dict):
        kw = dict(s["kwargs"])
        if s["cls"] == "Constant" and isinstance(kw["value"], list):
            kw["value"] = np.array(kw["value"], np.float32)
        return getattr(mx.init, s["cls"])(**kw)

    cases: dict = {"version": mx.__version__}

    # deterministic weight rules, through name dispatch on a *_weight name
    cases["constant"] = []
    for s, shape in [
        (spec("Zero"), (2, 3)),
        (spec("One"), (4,)),
        (spec("Constant", value=3.5), (2, 2)),
        (spec("Constant", value=-2), (3,)),
        (spec("Constant", value=[1.0, 2.0, 3.0]), (2, 3)),
        (spec("Constant", value=[[0.5], [-0.25]]), (2, 4)),
        (spec("Constant", value=[1.0, 2.0]), (2, 3)),
    ]:
        cases["constant"].append(
            {"init": s, "shape": shape, **run(build(s), "fc_weight", shape)}
        )

    cases["bilinear"] = []
    for shape in [
        (1, 1, 4, 4),
        (2, 3, 3, 3),
        (1, 2, 5, 4),
        (2, 1, 4, 6),
        (1, 1, 1, 1),
        (1, 1, 2, 7),
        (3, 2, 6, 3),
    ]:
        cases["bilinear"].append(
            {"shape": shape, **run(mx.init.Bilinear(), "up_weight", shape)}
        )
    cases["bilinear"].append(
        {"shape": (4, 4), **run(mx.init.Bilinear(), "up_weight", (4, 4))}
    )

    cases["lstmbias"] = []
    for fb, shape in [
        (1.0, (8,)),
        (2.5, (12,)),
        (-0.5, (10,)),
        (1.0, (8, 2)),
        (3.0, (3,)),
    ]:
        init = mx.init.LSTMBias(forget_bias=fb)
        via_attr = run(
            mx.init.Zero(), "lstm_i2h_bias", shape, attrs={"__init__": init.dumps()}
        )
        via_name = run(init, "lstm_i2h_bias", shape)
        cases["lstmbias"].append(
            {
                "forget_bias": fb,
                "shape": shape,
                "weight_rule": via_attr,
                "by_name": via_name,
            }
        )

    # FusedRNN: a position-revealing inner initializer, recorded piece names/shapes
    seen: list = []

    class Positional(mx.init.Initializer):
        """w = crc32(name) % 100 + arange(size) / 1000 (reshaped), biases by dispatch."""

        def _init_weight(self, name, arr):
            seen.append([str(name), list(arr.shape)])
            base = zlib.crc32(str(name).encode()) % 100
            vals = (
                base + np.arange(arr.size, dtype=np.float64).reshape(arr.shape) / 1000
            )
            arr[:] = vals.astype(np.float32)

    cases["fusedrnn"] = []
    hidden, n_in = 2, 3
    gates = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
    for mode, m in gates.items():
        for layers in (1, 2):
            for bidir in (False, True):
                b = 2 if bidir else 1
                size = (n_in + hidden + 2) * hidden * m * b + (
                    layers - 1
                ) * m * hidden * (hidden + b * hidden + 2) * b
                for inner in ("positional", "global", "constant"):
                    seen.clear()
                    if inner == "positional":
                        fused = mx.init.FusedRNN(
                            Positional(), hidden, layers, mode, bidir, forget_bias=1.5
                        )
                        glob = None
                    elif inner == "global":
                        fused = mx.init.FusedRNN(
                            None, hidden, layers, mode, bidir, forget_bias=0.75
                        )
                        glob = Positional()
                    else:
                        fused = mx.init.FusedRNN(
                            mx.init.Constant(0.5), hidden, layers, mode, bidir
                        )
                        glob = None
                    arr = mx.nd.zeros((size,))
                    fused._init_weight(
                        mx.init.InitDesc("parameters", global_init=glob), arr
                    )
                    cases["fusedrnn"].append(
                        {
                            "mode": mode,
                            "num_layers": layers,
                            "bidirectional": bidir,
                            "num_hidden": hidden,
                            "input_size": n_in,
                            "inner": inner,
                            "forget_bias": fused._forget_bias,
                            "size": size,
                            "value": arr.asnumpy().tolist(),
                            "weight_pieces": list(seen),
                            "dumps": fused.dumps(),
                        }
                    )
    bad = mx.init.FusedRNN(mx.init.One(), 2, 1, "lstm")
    try:
        bad._init_weight(mx.init.InitDesc("parameters"), mx.nd.zeros((57,)))
        cases["fusedrnn_bad_size"] = {"value": None}
    except Exception as e:  # noqa: BLE001
        cases["fusedrnn_bad_size"] = err(e)
    # 1.9.1 bug: FusedRNN(init=<JSON str>) looks the name up in the wrong registry dict
    try:
        mx.init.FusedRNN('["one", {}]', 2, 1, "gru")
        cases["fusedrnn_str_init"] = {"value": None}
    except Exception as e:  # noqa: BLE001
        cases["fusedrnn_str_init"] = err(e)

    # Mixed (Module path: InitDesc names) [Q32]
    cases["mixed"] = []
    mixed_specs = [
        (
            ["bias", ".*"],
            [spec("Constant", value=5), spec("Constant", value=7)],
            ["fc1_bias", "fc1_weight", "bias_weight", "bias"],
        ),
        (
            ["fc"],
            [spec("Constant", value=2)],
            ["fc1_bias", "fc1_weight", "conv_weight", "fc_gamma"],
        ),
        (
            [".*weight", ".*bias", ".*"],
            [spec("Constant", value=2), spec("Constant", value=4), spec("One")],
            ["fc_weight", "fc_bias", "bn_gamma", "bn_beta", "foo"],
        ),
        (
            ["conv.*weight", ".*weight"],
            [spec("Constant", value=3), spec("Zero")],
            ["conv1_weight", "fc_weight", "myconv_weight"],
        ),
        (
            ["fc1_", "fc"],
            [spec("Constant", value=1.5), spec("Constant", value=2.5)],
            ["fc1_weight", "fc2_weight", "fc1_max", "xfc_weight"],
        ),
    ]
    for patterns, inits, names in mixed_specs:
        mixed = mx.init.Mixed(patterns, [build(s) for s in inits])
        for name in names:
            cases["mixed"].append(
                {
                    "patterns": patterns,
                    "inits": inits,
                    "name": name,
                    "shape": (2, 2),
                    **run(mixed, name, (2, 2)),
                }
            )

    # Load
    os.makedirs(INIT_DIR, exist_ok=True)
    load_src = {
        "arg:fc_weight": mx.nd.array(np.arange(6).reshape(2, 3) / 4, dtype="float32"),
        "aux:bn_moving_mean": mx.nd.array([0.5, -1.5], dtype="float32"),
        "plain_weight": mx.nd.array([[1.25, 2.0]], dtype="float64"),
        "arg:half_weight": mx.nd.array([[0.1, 0.2]], dtype="float16"),
    }
    load_path = os.path.join(INIT_DIR, "load_dict.params")
    mx.nd.save(load_path, load_src)
    mx.nd.save(os.path.join(INIT_DIR, "load_list.params"), list(load_src.values()))
    cases["load"] = []
    with_default = mx.init.Load(load_path, default_init=mx.init.Constant(9))
    without = mx.init.Load(load_path)
    for name, shape in [
        ("fc_weight", (2, 3)),
        ("bn_moving_mean", (2,)),
        ("plain_weight", (1, 2)),
        ("half_weight", (1, 2)),
        ("other_weight", (2, 2)),
        ("other_bias", (3,)),
        ("arg:fc_weight", (2, 3)),
        ("fc_weight", (3, 2)),
    ]:
        cases["load"].append(
            {
                "name": name,
                "shape": shape,
                "default": spec("Constant", value=9),
                **run(with_default, name, shape),
            }
        )
        cases["load"].append(
            {"name": name, "shape": shape, "default": None, **run(without, name, shape)}
        )
    try:
        mx.init.Load(os.path.join(INIT_DIR, "load_list.params"))
        cases["load_list_file"] = {"value": None}
    except Exception as e:  # noqa: BLE001
        cases["load_list_file"] = err(e)

    # name dispatch (InitDesc path) and the legacy string path, same names
    cases["dispatch"] = []
    for name in [
        "weight",
        "fc_weight",
        "fc1_bias",
        "mybeta",
        "bn_gamma",
        "bn_beta",
        "upsampling0_weight",
        "stn_loc_bias",
        "stn_loc_weight",
        "q_min",
        "q_max",
        "xmin",
        "relu_max",
        "bn_moving_mean",
        "bn_moving_var",
        "bn_moving_inv_var",
        "bn_moving_avg",
        "foo",
        "weightx",
        "weight_bias",
        "bias_weight",
        "gamma_beta",
        "beta_gamma",
        "max_min",
        "min_max",
        "running_mean",
        "kernel",
        "bn_moving_var_weight",
        "fc_Weight",
        "",
    ]:
        init = mx.init.Constant(3)
        entry = {"name": name, "shape": (6,), **run(init, name, (6,))}
        arr = mx.nd.zeros((6,))
        try:
            init(name, arr)
            entry["legacy"] = {"value": arr.asnumpy().tolist()}
        except Exception as e:  # noqa: BLE001
            entry["legacy"] = err(e)
        cases["dispatch"].append(entry)

    # scales: capture the (low, high) / (loc, scale) MXNet passes to its RNG
    calls: list = []
    real_random = mxinit.random

    class Spy:
        def uniform(self, low, high, *args, **kwargs):
            calls.append(["uniform", float(low), float(high)])
            return real_random.uniform(low, high, *args, **kwargs)

        def normal(self, loc, scale, *args, **kwargs):
            calls.append(["normal", float(loc), float(scale)])
            return real_random.normal(loc, scale, *args, **kwargs)

    mxinit.random = Spy()
    cases["scales"] = []
    scale_specs = [
        spec("Xavier", rnd_type=r, factor_type=f, magnitude=mag)
        for r in ("uniform", "gaussian")
        for f in ("avg", "in", "out")
        for mag in (3, 2.34)
    ]
    scale_specs += [
        spec("MSRAPrelu", factor_type=f, slope=s)
        for f in ("avg", "in", "out")
        for s in (0.25, 0.0, 1.5)
    ]
    scale_specs += [spec("Uniform", scale=0.3), spec("Normal", sigma=0.02)]
    for s in scale_specs:
        for shape in [
            (4, 3),
            (64, 32, 3, 3),
            (10, 7, 5),
            (16, 8, 1, 1),
            (3, 5, 2, 2),
            (7, 2),
            (5,),
        ]:
            calls.clear()
            res = run(build(s), "w_weight", shape)
            entry = {"init": s, "shape": shape}
            if "error" in res:
                entry.update(error=res["error"], message=res["message"])
            else:
                entry["draw"] = calls[0]
            cases["scales"].append(entry)
    mxinit.random = real_random

    # moments of large draws (MXNet's RNG; compared within 3%)
    cases["moments"] = []
    for s, shape in [
        (spec("Uniform"), (200, 300)),
        (spec("Uniform", scale=2.5), (50000,)),
        (spec("Normal"), (200, 300)),
        (spec("Normal", sigma=3.0), (60000,)),
        (spec("Xavier"), (300, 200)),
        (
            spec("Xavier", rnd_type="gaussian", factor_type="in", magnitude=2),
            (64, 32, 3, 3),
        ),
        (
            spec("Xavier", rnd_type="uniform", factor_type="out", magnitude=3),
            (64, 32, 3, 3),
        ),
        (spec("MSRAPrelu"), (256, 128)),
        (spec("MSRAPrelu", factor_type="in", slope=0.0), (64, 16, 3, 3)),
        (spec("Orthogonal"), (300, 200)),
        (spec("Orthogonal"), (200, 300)),
        (spec("Orthogonal", scale=1.0, rand_type="normal"), (128, 64, 2, 2)),
    ]:
        a = np.array(run(build(s), "w_weight", shape)["value"], np.float64)
        cases["moments"].append(
            {
                "init": s,
                "shape": shape,
                "mean": a.mean(),
                "std": a.std(),
                "min": a.min(),
                "max": a.max(),
            }
        )

    # dumps / create
    cases["dumps"] = []
    for s in [
        spec("Zero"),
        spec("One"),
        spec("Constant", value=3.5),
        spec("Constant", value=[1.0, 2.0]),
        spec("Uniform"),
        spec("Uniform", scale=0.5),
        spec("Normal"),
        spec("Normal", sigma=2),
        spec("Orthogonal"),
        spec("Orthogonal", scale=2.0, rand_type="normal"),
        spec("Xavier"),
        spec("Xavier", rnd_type="gaussian", factor_type="in", magnitude=2.34),
        spec("MSRAPrelu"),
        spec("MSRAPrelu", factor_type="out", slope=0.1),
        spec("Bilinear"),
        spec("LSTMBias"),
        spec("LSTMBias", forget_bias=2.0),
    ]:
        cases["dumps"].append({"init": s, "dumps": build(s).dumps()})
    cases["create"] = []
    for text in [
        "zeros",
        "ZERO",
        "ones",
        "One",
        "Xavier",
        "msraprelu",
        "bilinear",
        "LSTMBias",
        '["xavier", {"rnd_type": "gaussian", "factor_type": "in", "magnitude": 2}]',
        '["constant", {"value": 4}]',
        '{"initializer": "normal", "sigma": 0.5}',
        '["fusedrnn", {"init": "[\\"one\\", {}]", "num_hidden": 2, "num_layers": 1, "mode": "gru"}]',
        "nosuchinit",
    ]:
        try:
            got = mx.init.create(text)
            cases["create"].append(
                {"text": text, "cls": type(got).__name__, "dumps": got.dumps()}
            )
        except Exception as e:  # noqa: BLE001
            cases["create"].append({"text": text, **err(e)})

    with open(os.path.join(INIT_DIR, "cases.json"), "w") as f:
        json.dump(cases, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", os.path.join(INIT_DIR, "cases.json"))

    record_nd(mx)


def record_nd(mx) -> None:
    os.makedirs(ND_DIR, exist_ok=True)
    src = source_arrays()
    src["flag"] = np.array([True, False, True])
    src["deep"] = (
        np.arange(2 * 1 * 2 * 1 * 3, dtype=np.float32).reshape(2, 1, 2, 1, 3) - 5
    )
    meta: dict = {}
    expected: dict = {}
    nd_src = {k: mx.nd.array(v, dtype=v.dtype) for k, v in src.items()}
    mx.nd.save(os.path.join(ND_DIR, "mx_dict.params"), nd_src)
    meta["mx_dict"] = {
        "kind": "dict",
        "names": list(src),
        "dtypes": [str(v.dtype) for v in src.values()],
    }
    for i, v in enumerate(src.values()):
        expected[f"mx_dict_{i}"] = v
    lst = [src["arg:fc_weight"], src["i64"], src["aux:bn_moving_var"]]
    mx.nd.save(
        os.path.join(ND_DIR, "mx_list.params"),
        [mx.nd.array(v, dtype=v.dtype) for v in lst],
    )
    meta["mx_list"] = {
        "kind": "list",
        "names": None,
        "dtypes": [str(v.dtype) for v in lst],
    }
    for i, v in enumerate(lst):
        expected[f"mx_list_{i}"] = v
    mx.nd.save(
        os.path.join(ND_DIR, "mx_single.params"), mx.nd.array(src["i8"], dtype=np.int8)
    )
    meta["mx_single"] = {"kind": "list", "names": None, "dtypes": ["int8"]}
    expected["mx_single_0"] = src["i8"]
    mx.nd.save(os.path.join(ND_DIR, "mx_empty_dict.params"), {})
    meta["mx_empty_dict"] = {"kind": "list", "names": None, "dtypes": []}
    np.savez(os.path.join(ND_DIR, "mx_expected.npz"), **expected)

    # what MXNet reads from the file mxjax wrote
    path = os.path.join(ND_DIR, "from_mxjax.params")
    if os.path.exists(path):
        got = mx.nd.load(path)
        names = list(got) if isinstance(got, dict) else None
        values = list(got.values()) if isinstance(got, dict) else got
        np.savez(
            os.path.join(ND_DIR, "from_mxjax_readback.npz"),
            **{f"a{i}": v.asnumpy() for i, v in enumerate(values)},
        )
        meta["from_mxjax_readback"] = {
            "kind": "dict" if names else "list",
            "names": names,
            "dtypes": [np.dtype(v.dtype).name for v in values],
        }
    else:
        print(
            "warning: run --write-mxjax first to record the MXNet read-back of from_mxjax.params"
        )
    with open(os.path.join(ND_DIR, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", ND_DIR)


if __name__ == "__main__":
    if "--write-mxjax" in sys.argv[1:]:
        write_mxjax()
    else:
        record_mxnet()
