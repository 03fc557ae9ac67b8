"""Record Apache MXNet 1.9.1's lr_scheduler outputs for mxjax's parity tests.

Run by hand where MXNet is installed (mxjax never imports mxnet)::

    /work/mxref/bin/python tools/record_mxnet_schedulers.py

It writes ``tests/reference/lr_scheduler/{factor,multifactor,poly,cosine}.json``
(one case per configuration), ``overwrite.json`` (optimizers that overwrite the
scheduler's ``base_lr``, [Q1]/[Q33]) and ``signatures.json`` (MXNet's argument
names, order and defaults). Every run calls a *fresh* stateful MXNet scheduler with
a non-decreasing sequence of ``num_update``: ``1..N`` (what an optimizer does),
``0..N`` (for N <= 200) and one sequence with repeats and jumps. Values are float64,
written with ``repr``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import pathlib

import mxnet as mx
from mxnet import lr_scheduler as mxs

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/reference/lr_scheduler"
N = 60
LONG = 200

W_LIN = {"warmup_steps": 5, "warmup_begin_lr": 0.001, "warmup_mode": "linear"}
W_CON = {"warmup_steps": 5, "warmup_begin_lr": 0.001, "warmup_mode": "constant"}

FACTOR = [
    # Part E.6
    ("step3_f0.5", {"step": 3, "factor": 0.5}, N),
    ("step1_f0.9_stop0.05", {"step": 1, "factor": 0.9, "stop_factor_lr": 0.05}, N),
    ("step4_f0.7_w5_linear", {"step": 4, "factor": 0.7, "warmup_steps": 5,
                              "warmup_begin_lr": 0.01}, N),
    ("step4_f0.7_w5_constant", {"step": 4, "factor": 0.7, "warmup_steps": 5,
                                "warmup_begin_lr": 0.01, "warmup_mode": "constant"}, N),
    # more
    ("defaults_step2", {"step": 2}, N),
    ("step2_f0.5_base0.1", {"step": 2, "factor": 0.5, "base_lr": 0.1}, N),
    ("step1_f0.5_stop_default", {"step": 1, "factor": 0.5, "base_lr": 1.0}, N),
    ("step1_f0.5_stop0", {"step": 1, "factor": 0.5, "base_lr": 1.0,
                          "stop_factor_lr": 0.0}, N),
    ("step5_f0.1_stop1e-4", {"step": 5, "factor": 0.1, "base_lr": 0.3,
                             "stop_factor_lr": 1e-4}, N),
    ("base_below_stop", {"step": 3, "factor": 0.5, "base_lr": 0.01,
                         "stop_factor_lr": 0.02}, N),
    ("base_below_stop_f1", {"step": 3, "factor": 1.0, "base_lr": 0.01,
                            "stop_factor_lr": 0.02}, N),
    ("step1_f0.999_long", {"step": 1, "factor": 0.999, "base_lr": 0.5}, 1200),
    ("step7_f0.93_long", {"step": 7, "factor": 0.93, "base_lr": 0.05,
                          "stop_factor_lr": 0.0}, 800),
    ("warmup_gt_step_linear", {"step": 3, "factor": 0.5, "base_lr": 0.1, **W_LIN,
                               "warmup_steps": 10}, N),
    ("warmup_gt_step_constant", {"step": 3, "factor": 0.5, "base_lr": 0.1, **W_CON,
                                 "warmup_steps": 10}, N),
    ("warmup_eq_step", {"step": 6, "factor": 0.8, "base_lr": 0.2, **W_LIN,
                        "warmup_steps": 6}, N),
    ("warmup1_begin0", {"step": 2, "factor": 0.5, "base_lr": 0.1,
                        "warmup_steps": 1}, N),
    ("warmup_begin_eq_base", {"step": 4, "factor": 0.5, "base_lr": 0.1,
                              "warmup_steps": 4, "warmup_begin_lr": 0.1}, N),
    ("warmup_stop_bites", {"step": 2, "factor": 0.3, "base_lr": 0.5,
                           "stop_factor_lr": 1e-3, **W_LIN, "warmup_steps": 7}, N),
    ("base0", {"step": 2, "factor": 0.5, "base_lr": 0.0, "stop_factor_lr": 0.0}, N),
    ("odd_values", {"step": 11, "factor": 0.77, "base_lr": 0.0123,
                    "stop_factor_lr": 3e-4, "warmup_steps": 13,
                    "warmup_begin_lr": 0.0007}, 200),
]

MULTIFACTOR = [
    # Part E.6
    ("steps3_7_10_f0.1", {"step": [3, 7, 10], "factor": 0.1}, N),
    ("steps5_8_f0.5_w4", {"step": [5, 8], "factor": 0.5, "warmup_steps": 4}, N),
    # more
    ("steps2_4_f0.5_base1", {"step": [2, 4], "factor": 0.5, "base_lr": 1.0}, N),
    ("steps1", {"step": [1], "factor": 0.5, "base_lr": 0.1}, N),
    ("defaults", {"step": [4, 9]}, N),
    ("steps_inside_warmup_linear", {"step": [2, 4, 12], "factor": 0.5, "base_lr": 0.1,
                                    **W_LIN, "warmup_steps": 8}, N),
    ("steps_inside_warmup_constant", {"step": [2, 4, 12], "factor": 0.5,
                                      "base_lr": 0.1, **W_CON, "warmup_steps": 8}, N),
    ("step_eq_warmup", {"step": [5, 20], "factor": 0.3, "base_lr": 0.2, **W_LIN}, N),
    ("many_steps", {"step": list(range(3, 60, 4)), "factor": 0.8, "base_lr": 0.4}, N),
    ("consecutive", {"step": [10, 11, 12, 13], "factor": 0.9, "base_lr": 0.05,
                     **W_LIN}, N),
    ("odd_values", {"step": [17, 40, 41, 90], "factor": 0.37, "base_lr": 0.0123,
                    "warmup_steps": 9, "warmup_begin_lr": 0.0005}, 120),
]

POLY = [
    # Part E.6
    ("M20_pwr2", {"max_update": 20, "pwr": 2}, N),
    ("M20_pwr1_final0.01_w5", {"max_update": 20, "pwr": 1, "final_lr": 0.01,
                               "warmup_steps": 5, "warmup_begin_lr": 0.001}, N),
    ("M17_pwr0.5_final0.001", {"max_update": 17, "pwr": 0.5, "final_lr": 0.001}, N),
    # more
    ("M4_pwr1_base1", {"max_update": 4, "pwr": 1, "base_lr": 1.0}, N),
    ("M1", {"max_update": 1, "base_lr": 0.1}, N),
    ("M1_pwr0.5", {"max_update": 1, "base_lr": 0.1, "pwr": 0.5}, N),
    ("M2_w1", {"max_update": 2, "base_lr": 0.1, "warmup_steps": 1}, N),
    ("M21_w20_linear", {"max_update": 21, "base_lr": 0.1, **W_LIN,
                        "warmup_steps": 20}, N),
    ("M30_pwr3_w5_constant", {"max_update": 30, "pwr": 3, "base_lr": 0.2, **W_CON}, N),
    ("M30_pwr2_w5_linear_final", {"max_update": 30, "base_lr": 0.2, "final_lr": 0.05,
                                  **W_LIN}, N),
    ("M40_pwr0.5_w8_linear", {"max_update": 40, "pwr": 0.5, "base_lr": 0.3,
                              "final_lr": 0.002, **W_LIN, "warmup_steps": 8}, N),
    ("M40_pwr1.7_final_gt_base", {"max_update": 40, "pwr": 1.7, "base_lr": 0.01,
                                  "final_lr": 0.05}, N),
    ("M60_exact_N", {"max_update": 60, "pwr": 2, "base_lr": 0.1}, N),
    ("M700_pwr2_long", {"max_update": 700, "pwr": 2, "base_lr": 0.05,
                        "warmup_steps": 37, "warmup_begin_lr": 0.0}, 720),
    ("M500_pwr1.25", {"max_update": 500, "pwr": 1.25, "base_lr": 0.4,
                      "final_lr": 1e-4}, 520),
]

COSINE = [
    # Part E.6
    ("M20", {"max_update": 20}, N),
    ("M30_final0.001_w7", {"max_update": 30, "final_lr": 0.001, "warmup_steps": 7}, N),
    # more
    ("M1", {"max_update": 1, "base_lr": 0.1}, N),
    ("M2_w1", {"max_update": 2, "base_lr": 0.1, "warmup_steps": 1}, N),
    ("M11_w10_constant", {"max_update": 11, "base_lr": 0.1, **W_CON,
                          "warmup_steps": 10}, N),
    ("M25_w5_linear", {"max_update": 25, "base_lr": 0.2, **W_LIN}, N),
    ("M25_w5_constant_final", {"max_update": 25, "base_lr": 0.2, "final_lr": 0.01,
                               **W_CON}, N),
    ("M40_final_gt_base", {"max_update": 40, "base_lr": 0.01, "final_lr": 0.05}, N),
    ("M60_exact_N", {"max_update": 60, "base_lr": 0.1}, N),
    ("M700_w37_long", {"max_update": 700, "base_lr": 0.05, "warmup_steps": 37}, 720),
    ("M1500_near_end", {"max_update": 1500, "base_lr": 1.0}, 1510),
]

CLASSES = {
    "factor": (mxs.FactorScheduler, FACTOR),
    "multifactor": (mxs.MultiFactorScheduler, MULTIFACTOR),
    "poly": (mxs.PolyScheduler, POLY),
    "cosine": (mxs.CosineScheduler, COSINE),
}


def _run(cls, kwargs, ns):
    sched = cls(**kwargs)
    return [float(sched(n)) for n in ns]


def _jumps(n_max):
    """A non-decreasing sequence with repeats and gaps (an optimizer may skip calls)."""
    ns = [1, 1, 2, 5, 5, 6, 9, 14, 15, 23, 40, 41]
    return [n for n in ns if n <= n_max] + [n_max // 2 + 3, n_max, n_max + 7]


def _case(cls, name, kwargs, n_max):
    runs = []
    seqs = [list(range(1, n_max + 1)), _jumps(n_max)]
    if n_max <= LONG:  # long runs are recorded from 1 only, to keep the files small
        seqs.append(list(range(0, n_max + 1)))
    for ns in seqs:
        ns = sorted(ns)
        runs.append({"n": ns, "lr": _run(cls, kwargs, ns)})
    return {"name": name, "cls": cls.__name__, "kwargs": kwargs, "runs": runs}


# Optimizer-overwrite cases [Q1]/[Q33]: the optimizer is built with the scheduler and
# no learning_rate (Adam/Adamax/RMSProp/Signum overwrite base_lr with their default;
# SGD does not); "adam_explicit" passes learning_rate, which always overwrites.
OVERWRITE_OPTS = [
    ("Adam", {}),
    ("Adamax", {}),
    ("RMSProp", {}),
    ("Signum", {}),
    ("SGD", {}),
    ("Adam", {"learning_rate": 0.05}),
]
OVERWRITE_SCHEDS = [
    ("factor_w5_linear", "FactorScheduler", {"step": 4, "factor": 0.5, "base_lr": 0.1,
                                             **W_LIN, "warmup_steps": 6}),
    ("factor_w5_stop", "FactorScheduler", {"step": 2, "factor": 0.5, "base_lr": 0.1,
                                           "stop_factor_lr": 2e-4, **W_LIN}),
    ("multifactor_w5_linear", "MultiFactorScheduler", {"step": [3, 8, 12],
                                                       "factor": 0.5, "base_lr": 0.1,
                                                       **W_LIN}),
    ("multifactor_w5_constant", "MultiFactorScheduler", {"step": [8, 12], "factor": 0.5,
                                                         "base_lr": 0.1, **W_CON}),
    ("poly_w5_linear", "PolyScheduler", {"max_update": 30, "pwr": 2, "base_lr": 0.1,
                                         "final_lr": 0.001, **W_LIN}),
    ("cosine_w5_constant", "CosineScheduler", {"max_update": 30, "base_lr": 0.1,
                                               "final_lr": 0.001, **W_CON}),
]


def _overwrite_cases():
    cases = []
    for sname, cls_name, kwargs in OVERWRITE_SCHEDS:
        for opt_name, opt_kwargs in OVERWRITE_OPTS:
            sched = getattr(mxs, cls_name)(**kwargs)
            with contextlib.redirect_stdout(io.StringIO()):  # MXNet print()s a warning
                opt = getattr(mx.optimizer, opt_name)(lr_scheduler=sched, **opt_kwargs)
            assert opt.lr_scheduler is sched
            ns = list(range(1, N + 1))
            cases.append({
                "name": f"{sname}-{opt_name}{'-lr' if opt_kwargs else ''}",
                "cls": cls_name,
                "kwargs": kwargs,
                "optimizer": opt_name,
                "optimizer_kwargs": opt_kwargs,
                "base_lr_after": float(sched.base_lr),
                "runs": [{"n": ns, "lr": [float(sched(n)) for n in ns]}],
            })
    return cases


def _signatures():
    out = {}
    for cls in (mxs.LRScheduler, mxs.FactorScheduler, mxs.MultiFactorScheduler,
                mxs.PolyScheduler, mxs.CosineScheduler):
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        out[cls.__name__] = [
            [p.name, None if p.default is inspect.Parameter.empty else p.default,
             p.default is inspect.Parameter.empty]
            for p in params
        ]
    return out


def _dump(name, obj):
    path = OUT / name
    path.write_text(json.dumps(obj, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main():
    logging.disable(logging.CRITICAL)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"mxnet_version": mx.__version__}
    for fname, (cls, cases) in CLASSES.items():
        _dump(f"{fname}.json", {**meta, "cases": [_case(cls, *c) for c in cases]})
    _dump("overwrite.json", {**meta, "cases": _overwrite_cases()})
    _dump("signatures.json", {**meta, "signatures": _signatures()})


if __name__ == "__main__":
    main()
