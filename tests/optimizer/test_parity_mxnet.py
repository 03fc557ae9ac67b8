"""Every recorded MXNet trajectory, replayed step by step through the jitted update."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from tests.helpers import all_optimizer_cases, optimizer_arrays, optimizer_cases, recorder
from tests.optimizer.conftest import RANDOM

# Random optimizers are replayed with their noise removed by tests/optimizer/test_<name>.py
CASES = [c for c in all_optimizer_cases() if c[0] not in RANDOM]


def build(rec: dict) -> mx.optimizer.Optimizer:
    kwargs = dict(rec["jax_kwargs"])
    if rec["scheduler"]:
        cls, skw = rec["scheduler"]
        kwargs["lr_scheduler"] = getattr(mx.lr_scheduler, cls)(**skw)
    with warnings.catch_warnings():
        # MXNet announces the Q1 base_lr override; so does mxjax.
        warnings.simplefilter("ignore", UserWarning)
        return mx.optimizer.create(rec["optimizer"], **kwargs)


def tolerance(dtype: str) -> dict:
    if dtype == "float16":  # float16 round-off: MXNet rounds after every operation
        return dict(rtol=4e-3, atol=4e-3)
    return dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name,cid", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_matches_mxnet_every_step(name: str, cid: str) -> None:
    rec = optimizer_cases(name)[cid]
    arrays = optimizer_arrays(name)
    opt = build(rec)
    w0, grads = recorder().inputs(rec["shapes"], rec["dtype"], rec["seed"], rec["steps"])
    names = rec["names"]
    params = {n: jnp.asarray(w) for n, w in zip(names, w0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float16 without multi_precision
        state = opt.init(params)
    step = jax.jit(opt.update)
    for k, g in enumerate(grads, start=1):
        params, state = step({n: jnp.asarray(x) for n, x in zip(names, g)}, state, params)
        for i, n in enumerate(names):
            want = arrays[f"{cid}/w{k}/{i}"]
            got = np.asarray(params[n])
            assert got.dtype == want.dtype
            np.testing.assert_allclose(
                got.astype(np.float64),
                want.astype(np.float64),
                err_msg=f"{name} {cid}: parameter {n!r} after step {k}",
                **tolerance(rec["dtype"]),
            )
