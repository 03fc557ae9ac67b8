"""Record reference trajectories of real MXNet optimizers for mxjax's parity tests.

Run by hand, in a venv with MXNet (never a dependency of mxjax)::

    python3 -m venv mxref && mxref/bin/pip install "numpy<1.24" mxnet==1.9.1
    mxref/bin/python tools/record_mxnet_optimizers.py            # MXNet 1.9.1 grid
    mx2/bin/python tools/record_mxnet_optimizers.py --mxnet2     # 2.0-only optimizers

For every case it builds the optimizer with ``mx.optimizer.create``, drives it through
``mx.optimizer.get_updater`` exactly as Module/Trainer do (all parameters in one call per
step, so aggregation and multi_precision take their real paths) and saves the initial
weights, the gradients and the weights after every step.

Output, per optimizer: ``tests/reference/optimizer/<name>.json`` (one record per case:
mxjax kwargs, MXNet kwargs, scheduler spec, parameter names/shapes/dtype) and
``<name>.npz`` (arrays ``<case>/w<step>/<i>``: weight ``i`` after ``step`` updates). The
inputs are not stored: :func:`inputs` regenerates the initial weights and the gradients
from the case's seed with numpy's legacy ``RandomState`` (a stream numpy keeps stable),
and the tests import the same function.
Cases come from a fixed grid plus seeded random combinations, so a rerun reproduces
the files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys

import numpy as np

try:
    import mxnet as mx
except ImportError:  # the tests import inputs() from here without MXNet
    mx = None

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "reference", "optimizer")
STEPS = 10

# Parameter sets: names sort in index order so mxjax's dict flattening matches MXNet's
# index order (this matters for Nadam's global schedule [Q15]).
PARAMS = {
    "p3": [("l0_weight", (3, 4, 5)), ("l1_bias", (10, 4)), ("l2_gamma", (7,))],
    "p5": [
        ("l0_weight", (3, 4, 5)),
        ("l1_bias", (10, 4)),
        ("l2_gamma", (7,)),
        ("l3_beta", (2, 3)),
        ("weight", (6,)),
    ],
    # 2-D only, for GroupAdaGrad (MXNet asserts 2-D weights)
    "p2d": [("l0_weight", (3, 4)), ("l1_bias", (10, 5)), ("l2_gamma", (7, 1))],
}

SCHEDULERS = {
    "factor": ("FactorScheduler", {"step": 3, "factor": 0.5, "base_lr": 0.1}),
    "factor_stop": (
        "FactorScheduler",
        {"step": 2, "factor": 0.5, "stop_factor_lr": 0.02, "base_lr": 0.1},
    ),
    "multifactor": ("MultiFactorScheduler", {"step": [2, 5, 7], "factor": 0.3, "base_lr": 0.05}),
    "poly_warmup": (
        "PolyScheduler",
        {"max_update": 8, "base_lr": 0.1, "pwr": 2, "final_lr": 0.001, "warmup_steps": 3,
         "warmup_begin_lr": 0.01},
    ),
    "cosine_warmup": (
        "CosineScheduler",
        {"max_update": 9, "base_lr": 0.08, "final_lr": 0.0, "warmup_steps": 2,
         "warmup_begin_lr": 0.0, "warmup_mode": "constant"},
    ),
}


def inputs(shapes, dtype, seed, steps):
    """The initial weights and per-step gradients of a case (shared with the tests)."""
    rs = np.random.RandomState(seed)
    w0 = [rs.normal(0, 1, shape).astype(dtype) for shape in shapes]
    grads = [
        [(rs.normal(0, 1, shape) * 2 + 0.1).astype(dtype) for shape in shapes]
        for _ in range(steps)
    ]
    return w0, grads


def make_scheduler(key):
    cls, kw = SCHEDULERS[key]
    return getattr(mx.lr_scheduler, cls)(**kw)


def common_variants(dtype_options):
    """The shared-behaviour grid, crossed with each optimizer's own options."""
    v = [
        {},
        {"wd": 0.03},
        {"rescale_grad": 0.25},
        {"clip_gradient": 0.6},
        {"clip_gradient": 0.6, "wd": 0.1, "rescale_grad": 2.0},
        {"clip_gradient": 0.0},  # [Q7]
        {"begin_num_update": 5},
        {"_sched": "factor"},
        {"_sched": "factor_stop", "learning_rate": 0.1},
        {"_sched": "multifactor"},
        {"_sched": "poly_warmup"},
        {"_sched": "cosine_warmup", "wd": 0.01},
        {"_wd_by_name": True, "wd": 0.05},
        {"_wd_by_name": True, "wd": 0.05, "_lr_mult": {"l1_bias": 2.0, "l2_gamma": 0.0},
         "_wd_mult": {"l1_bias": 0.5}},
        {"_lr_mult_idx": {0: 0.5, 2: 3.0}, "wd": 0.02},
        {"_params": "p5", "wd": 0.02, "clip_gradient": 1.0},
    ]
    for dt in dtype_options:
        v.append({"_dtype": dt[0], "multi_precision": dt[1]})
        v.append({"_dtype": dt[0], "multi_precision": dt[1], "wd": 0.05, "clip_gradient": 1.5,
                  "_sched": "factor"})
    return v


F16_BOTH = [("float16", True), ("float16", False)]
F16_MP = [("float16", True)]  # MXNet crashes on float16 without mp for float32-state optimizers

GRIDS_191 = {
    "sgd": (F16_BOTH, [{}, {"momentum": 0.9}, {"momentum": 0.5, "learning_rate": 0.2}]),
    "nag": (F16_BOTH, [{}, {"momentum": 0.9}, {"momentum": 0.6, "learning_rate": 0.05}]),
    "rmsprop": (F16_MP, [{}, {"centered": True}, {"gamma1": 0.7, "epsilon": 1e-4},
                         {"centered": True, "gamma2": 0.5, "clip_weights": 0.5},
                         {"clip_weights": 0.3, "learning_rate": 0.01}]),
    "adam": (F16_BOTH, [{}, {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-4},
                        {"learning_rate": 0.01}]),
    "adagrad": (F16_MP, [{}, {"eps": 1e-3, "learning_rate": 0.1}]),
    "adadelta": (F16_MP, [{}, {"rho": 0.5, "epsilon": 1e-3}]),
    "adamax": (F16_BOTH, [{}, {"beta1": 0.5, "beta2": 0.8, "learning_rate": 0.01}]),
    "nadam": (F16_BOTH, [{}, {"beta1": 0.8, "beta2": 0.9, "schedule_decay": 0.1,
                              "epsilon": 1e-5}, {"learning_rate": 0.01}]),
    "lars": (F16_BOTH, [{"momentum": 0.9, "eta": 2.0}, {},
                        {"eta": 0.5, "eps": 0.5, "learning_rate": 0.05},
                        {"momentum": 0.5, "momentum_correction": False, "eta": 1.0,
                         "_sched": "multifactor"},
                        {"momentum": 0.9, "eta": 1.0, "_params": "p5", "_sched": "factor"},
                        {"momentum": 0.9, "eta": 1.0, "_params": "p5", "_sched": "factor",
                         "_wd_by_name": True, "wd": 0.05}]),
    "lbsgd": (F16_BOTH, [{"batch_scale": 2, "warmup_epochs": 1, "updates_per_epoch": 4,
                          "momentum": 0.9}, {},
                         {"warmup_strategy": "power2", "batch_scale": 3, "warmup_epochs": 2,
                          "updates_per_epoch": 3},
                         {"warmup_strategy": "sqrt", "batch_scale": 2, "warmup_epochs": 1,
                          "updates_per_epoch": 5, "momentum": 0.5},
                         {"warmup_strategy": "lars", "batch_scale": 3, "momentum": 0.9},
                         {"warmup_strategy": "lars", "learning_rate": 0.05, "wd": 0.1},
                         {"begin_epoch": 1, "batch_scale": 3, "updates_per_epoch": 4,
                          "warmup_epochs": 2},
                         {"begin_epoch": 1, "batch_scale": 2, "updates_per_epoch": 3,
                          "warmup_epochs": 1, "warmup_strategy": "sqrt", "momentum": 0.9}]),
    "lamb": (F16_BOTH, [{}, {"learning_rate": 0.05},
                        {"lower_bound": 0.5, "upper_bound": 2.0, "learning_rate": 0.02},
                        {"lower_bound": 3.0, "learning_rate": 0.02},
                        {"lower_bound": 0.0, "upper_bound": 1.0, "learning_rate": 0.02},
                        {"bias_correction": False, "learning_rate": 0.02},
                        {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-3,
                         "bias_correction": False}]),
}

GRIDS_191.update({
    "signum": (F16_BOTH, [{}, {"momentum": 0.0}, {"wd_lh": 0.02},
                          {"momentum": 0.5, "wd_lh": 0.1, "learning_rate": 0.05},
                          {"momentum": 0.0, "learning_rate": 0.05, "wd": 0.1}]),
    "ftml": (F16_BOTH, [{}, {"beta1": 0.9, "beta2": 0.99, "epsilon": 1e-4},
                        {"learning_rate": 0.05}, {"beta1": 0.0, "beta2": 0.5}]),
    "ftrl": (F16_MP, [{}, {"lamda1": 0.0, "beta": 0.5}, {"lamda1": 0.5, "learning_rate": 0.5},
                      {"lamda1": 0.1, "beta": 2.0, "learning_rate": 0.05}]),
    "dcasgd": (F16_BOTH, [{}, {"lamda": 0.5, "learning_rate": 0.1}, {"lamda": 0.0},
                          {"lamda": 2.0, "learning_rate": 0.05}]),
    # SGLD's noise is removed from the recorded trajectory (sgld_remove_noise) [Q13]
    "sgld": (F16_BOTH, [{}, {"learning_rate": 0.001}, {"learning_rate": 0.1}]),
    "groupadagrad": (F16_MP, [{"_params": "p2d"},
                              {"_params": "p2d", "eps": 1e-2, "learning_rate": 0.1},
                              {"_params": "p2d", "learning_rate": 0.5},
                              {"_params": "p2d", "clip_gradient": 0.3, "rescale_grad": 0.5},
                              {"_params": "p2d", "_lr_mult": {"l1_bias": 2.0, "l2_gamma": 0.0},
                               "_sched": "multifactor"}]),
})


def sgld_remove_noise(opt, updater, weights, rng_seed, grads, before):
    """Subtract from each weight the noise SGLD just drew [Q13].

    MXNet's SGLD adds ``normal(0, sqrt(lr))`` from the global RNG, one draw per index in
    order. The caller seeded that RNG with ``rng_seed`` before the update; re-seeding
    and drawing the same shapes again reproduces the noise, which is removed (from the
    float32 master copy under multi_precision), leaving the deterministic trajectory.
    For float32 weights the result is checked against the deterministic formula.
    """
    mx.random.seed(rng_seed)
    for i, w in enumerate(weights):
        state = updater.states[i]
        target = state[0] if isinstance(state, tuple) else w  # (w32, None) under mp
        lr = opt._get_lr(i)
        noise = mx.nd.random.normal(0, math.sqrt(lr), shape=target.shape,
                                    dtype=target.dtype, ctx=target.context)
        target[:] = target - noise
        if target is not w:
            w[:] = target.astype(w.dtype)
        if w.dtype == np.float32:
            g = grads[i].astype(np.float64) * opt.rescale_grad
            if opt.clip_gradient is not None:
                g = np.clip(g, -opt.clip_gradient, opt.clip_gradient)
            wp = before[i].astype(np.float64)
            want = wp - lr / 2 * (g + opt._get_wd(i) * wp)
            err = np.max(np.abs(w.asnumpy() - want))
            assert err < 1e-4, f"SGLD noise not reproduced (max error {err})"


GRIDS_2 = {}  # 2.0-only optimizers (AdamW, AdaBelief, LANS) are added here
GRIDS_2["adamw"] = (F16_MP, [{}, {"correct_bias": False},
                             {"learning_rate": 0.01, "wd": 0.1},
                             {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-3,
                              "correct_bias": False},
                             {"rescale_grad": 0.0}])  # [Q26]
GRIDS_2["adabelief"] = (F16_MP, [{}, {"correct_bias": False}, {"learning_rate": 0.01},
                                 {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-4}])
GRIDS_2["lans"] = (F16_MP, [{}, {"learning_rate": 0.01},
                            {"lower_bound": 0.5, "upper_bound": 2.0, "learning_rate": 0.01},
                            {"lower_bound": 0.0, "upper_bound": 1.0, "learning_rate": 0.01},
                            {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-3,
                             "learning_rate": 0.02}])
# Optimizers whose math reads leaf names (LARS [Q17]): MXNet gets the names even
# without the wd rule, set after construction as Module does for an instance [Q3].
ALWAYS_NAMED = {"lars"}


def random_cases(rng, own, dtype_options, n):
    """Seeded random combinations of every axis (cases the fixed grid does not list)."""
    out = []
    for _ in range(n):
        c = dict(rng.choice(own))
        if rng.random() < 0.6:
            c["wd"] = rng.choice([0.0, 0.01, 0.1])
        if rng.random() < 0.5:
            c["clip_gradient"] = rng.choice([0.3, 1.0, 2.5])
        if rng.random() < 0.4:
            c["rescale_grad"] = rng.choice([0.5, 1.5])
        if rng.random() < 0.3:
            c["_sched"] = rng.choice(sorted(SCHEDULERS))
        if rng.random() < 0.3:
            c["begin_num_update"] = rng.choice([1, 3, 20])
        if rng.random() < 0.3:
            dt = rng.choice(dtype_options)
            c["_dtype"], c["multi_precision"] = dt
        if rng.random() < 0.3:
            c["_params"] = "p5"
        if rng.random() < 0.2:
            c["_wd_by_name"] = True
        out.append(c)
    return out


def case_id(i, spec):
    parts = [f"c{i:03d}"]
    for k in sorted(spec):
        v = spec[k]
        if isinstance(v, dict):
            v = "-".join(f"{a}{b}" for a, b in sorted(v.items()))
        parts.append(f"{k.strip('_')}{v}")
    return "_".join(str(p) for p in parts).replace(" ", "")


def run_case(name, spec, seed):
    params = PARAMS[spec.get("_params", "p3")]
    dtype = spec.get("_dtype", "float32")
    names = [n for n, _ in params]
    mx_kw = {k: v for k, v in spec.items() if not k.startswith("_")}
    jax_kw = dict(mx_kw)
    if spec.get("_wd_by_name"):
        mx_kw["param_idx2name"] = dict(enumerate(names))
        jax_kw["wd_by_name"] = True
    sched = spec.get("_sched")
    if sched:
        mx_kw["lr_scheduler"] = make_scheduler(sched)
    if name == "groupadagrad":
        import mxnet.optimizer.contrib  # noqa: F401 - registers GroupAdaGrad
    opt = mx.optimizer.create(name, **mx_kw)
    if name in ALWAYS_NAMED and not spec.get("_wd_by_name"):
        opt.idx2name = dict(enumerate(names))
    if mx.__version__.startswith("2") and spec.get("_wd_by_name"):
        jax_kw.pop("wd_by_name")  # MXNet 2.0 has no name-based default wd rule
    lr_mult = dict(spec.get("_lr_mult", {}))
    if "_lr_mult_idx" in spec:
        opt.set_lr_mult(dict(spec["_lr_mult_idx"]))
        lr_mult.update({names[i]: m for i, m in spec["_lr_mult_idx"].items()})
    elif lr_mult:
        if not spec.get("_wd_by_name"):
            # Name keys need idx2name; set after construction so the default wd rule,
            # which runs only in the constructor [Q3], stays off (as for a Module given
            # an optimizer instance).
            opt.idx2name = dict(enumerate(names))
        opt.set_lr_mult(lr_mult)
    if spec.get("_wd_mult"):
        opt.set_wd_mult(spec["_wd_mult"])
        jax_kw["wd_mult"] = spec["_wd_mult"]
    if lr_mult:
        jax_kw["lr_mult"] = lr_mult
    updater = mx.optimizer.get_updater(opt)

    w0, grad_steps = inputs([s for _, s in params], dtype, seed, STEPS)
    weights = [mx.nd.array(w, dtype=dtype) for w in w0]
    arrays = {}
    for step, grads in enumerate(grad_steps, start=1):
        if name == "sgld":
            before = [w.asnumpy() for w in weights]
            mx.random.seed(seed * 100 + step)
        updater(list(range(len(params))), [mx.nd.array(g, dtype=dtype) for g in grads],
                weights)
        if name == "sgld":
            sgld_remove_noise(opt, updater, weights, seed * 100 + step, grads, before)
        for i, w in enumerate(weights):
            arrays[f"w{step}/{i}"] = w.asnumpy()
    record = {
        "optimizer": name,
        "jax_kwargs": jax_kw,
        "mx_kwargs": {k: v for k, v in mx_kw.items() if k != "lr_scheduler"},
        "scheduler": list(SCHEDULERS[sched]) if sched else None,
        "names": names,
        "shapes": [list(s) for _, s in params],
        "dtype": dtype,
        "steps": STEPS,
        "seed": seed,
        "mxnet": mx.__version__,
    }
    if name == "sgld":
        record["noise"] = "removed"  # see sgld_remove_noise
    return record, arrays


def record(grids, n_random):
    os.makedirs(OUT, exist_ok=True)
    for name, (dtypes, own) in grids.items():
        rng = random.Random(f"mxjax-{name}")
        specs = [
            {**o, **c}
            for o, c in itertools.product(own[:1], common_variants(dtypes))
        ]
        specs += [dict(o) for o in own[1:]]
        specs += [{**o, **c} for o in own[1:] for c in rng.sample(common_variants(dtypes), 4)]
        specs += random_cases(rng, own, dtypes, n_random)
        records, arrays = {}, {}
        for i, spec in enumerate(specs):
            cid = case_id(i, spec)
            try:
                rec, arr = run_case(name, spec, seed=1000 + i)
            except Exception as e:  # noqa: BLE001 - recorded as a refusal below
                print(f"{name} {cid}: MXNet raised {type(e).__name__}: {e}"[:300],
                      file=sys.stderr)
                continue
            records[cid] = rec
            arrays.update({f"{cid}/{k}": v for k, v in arr.items()})
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(records, f, indent=1, sort_keys=True)
        np.savez_compressed(os.path.join(OUT, f"{name}.npz"), **arrays)
        print(f"{name}: {len(records)} cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mxnet2", action="store_true", help="record the 2.0-only grid")
    ap.add_argument("--only", nargs="*", help="optimizer names to record")
    ap.add_argument("--random", type=int, default=8, help="random cases per optimizer")
    args = ap.parse_args()
    grids = GRIDS_2 if args.mxnet2 else GRIDS_191
    if args.only:
        grids = {k: v for k, v in grids.items() if k in args.only}
    record(grids, args.random)


if __name__ == "__main__":
    main()
