"""Every recorded MXNet trajectory, replayed step by step through the jitted update."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from tests.helpers import (
    all_optimizer_cases,
    optimizer_arrays,
    optimizer_cases,
    recorder,
    representative_cases,
)
from tests.optimizer.conftest import RANDOM

# Random optimizers are replayed with their noise removed by tests/optimizer/test_<name>.py
CASES = [c for c in all_optimizer_cases() if c[0] not in RANDOM]
# Replayed under XLA's default flags too (test_rounding_under_jit.py), and the multi-tensor
# layout's set (its equality with the per-leaf path is tested on random rules and data).
REPRESENTATIVE = representative_cases(CASES)


def params(cases: list[tuple[str, str]], tag: str = "") -> list:
    return [
        pytest.param(
            n,
            c,
            id=f"{n}-{c}{tag}",
            marks=[pytest.mark.representative] if (n, c) in REPRESENTATIVE else [],
        )
        for n, c in cases
    ]


def build(rec: dict) -> mx.optimizer.Optimizer:
    kwargs = dict(rec["jax_kwargs"])
    if rec["scheduler"]:
        cls, skw = rec["scheduler"]
        kwargs["lr_scheduler"] = getattr(mx.lr_scheduler, cls)(**skw)
    with warnings.catch_warnings():
        # MXNet announces the Q1 base_lr override; so does mxjax.
        warnings.simplefilter("ignore", UserWarning)
        return mx.optimizer.create(rec["optimizer"], **kwargs)


def starts_past_max_update(rec: dict) -> bool:
    """A Poly/Cosine schedule whose first call is already past ``max_update``.

    MXNet then returns the raw ``base_lr`` because its stateful scheduler never computed
    an in-range value [Q36]; mxjax's pure schedule returns ``final_lr`` there (documented).
    """
    if not rec["scheduler"] or rec["scheduler"][0] not in ("PolyScheduler", "CosineScheduler"):
        return False
    first = rec["jax_kwargs"].get("begin_num_update", 0) + 1
    return first > rec["scheduler"][1]["max_update"]


def tolerance(dtype: str) -> dict:
    if dtype == "float16":  # float16 round-off: MXNet rounds after every operation
        return dict(rtol=4e-3, atol=4e-3)
    return dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name,cid", params(CASES))
def test_matches_mxnet_every_step(name: str, cid: str) -> None:
    rec = optimizer_cases(name)[cid]
    want_run = mxnet_run(name, cid, rec)
    if starts_past_max_update(rec):  # [Q36]: compare with a constant final_lr instead
        final_lr = rec["scheduler"][1].get("final_lr", 0.0)
        const = {**rec, "scheduler": None}
        const["jax_kwargs"] = {**rec["jax_kwargs"], "learning_rate": final_lr}
        want_run = list(replay(const))
    for k, (got_step, want_step) in enumerate(zip(replay(rec), want_run, strict=True), 1):
        for n, got, want in zip(rec["names"], got_step, want_step):
            assert got.dtype == want.dtype
            np.testing.assert_allclose(
                got.astype(np.float64),
                want.astype(np.float64),
                err_msg=f"{name} {cid}: parameter {n!r} after step {k}",
                **tolerance(rec["dtype"]),
            )


# The multi-tensor layout (on the CPU, the custom call of mxjax/_kernels) replays the
# representative recorded cases of the eligible optimizers.
MULTI_CASES = [
    (n, c)
    for n, c in CASES
    if mx.optimizer.create(n).rule.flat_state
    and not starts_past_max_update(optimizer_cases(n)[c])
    and (n, c) in REPRESENTATIVE
]


@pytest.mark.parametrize("name,cid", params(MULTI_CASES))
def test_multi_tensor_matches_mxnet_every_step(name: str, cid: str) -> None:
    rec = optimizer_cases(name)[cid]
    rec = {**rec, "jax_kwargs": {**rec["jax_kwargs"], "multi_tensor": True}}
    want_run = mxnet_run(name, cid, rec)
    for k, (got_step, want_step) in enumerate(zip(replay(rec), want_run, strict=True), 1):
        for n, got, want in zip(rec["names"], got_step, want_step):
            np.testing.assert_allclose(
                got.astype(np.float64),
                want.astype(np.float64),
                err_msg=f"{name} {cid} (multi_tensor): parameter {n!r} after step {k}",
                **tolerance(rec["dtype"]),
            )


def mxnet_run(name: str, cid: str, rec: dict) -> list[list[np.ndarray]]:
    """The recorded MXNet weights, ``[step][param]``."""
    arrays = optimizer_arrays(name)
    return [
        [arrays[f"{cid}/w{k}/{i}"] for i in range(len(rec["names"]))]
        for k in range(1, rec["steps"] + 1)
    ]


def replay(rec: dict):
    """Yield mxjax's weights after each step of a recorded case, ``[param]`` per step."""
    opt = build(rec)
    w0, grads = recorder().inputs(rec["shapes"], rec["dtype"], rec["seed"], rec["steps"])
    names = rec["names"]
    params = {n: jnp.asarray(w) for n, w in zip(names, w0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float16 without multi_precision
        state = opt.init(params)
    step = jax.jit(opt.update)
    for g in grads:
        params, state = step({n: jnp.asarray(x) for n, x in zip(names, g)}, state, params)
        yield [np.asarray(params[n]) for n in names]
