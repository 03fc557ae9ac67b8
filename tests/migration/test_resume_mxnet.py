"""Resume MXNet 1.9.1 runs from their recorded ``.states`` files and continue as MXNet did.

``tools/record_mxnet_states.py`` saved each run after 3 updates (Module's
``save_checkpoint(..., save_optimizer_states=True)`` or ``Trainer.save_states``), then
recorded MXNet's own continuation after loading: 5 gradients and the weights after each.
mxjax loads the same file and must follow the same weights.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.mxnet_states import load_states, symbol_param_order
from tests.helpers import REFERENCE
from tests.optimizer.test_parity_mxnet import tolerance

STATES = REFERENCE / "states"


@cache
def cases() -> dict:
    return json.loads((STATES / "cases.json").read_text())


def module_optimizer(case: dict) -> mx.optimizer.Optimizer:
    """The optimizer as the recorded Module built it: ``rescale_grad = 1/batch``, weight
    decay only on ``*_weight``/``*_gamma`` (Module's idx2name rule), resumed at 3."""
    kw = dict(case["kwargs"], rescale_grad=0.25, wd_by_name=True,
              begin_num_update=case["begin_num_update"])
    if case["scheduler"]:
        cls, skw = case["scheduler"]
        kw["lr_scheduler"] = getattr(mx.lr_scheduler, cls)(**skw)
    if case["optimizer"] == "nadam":
        kw["order"] = symbol_param_order(STATES / f"{name_of(case)}-symbol.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # [Q1] lr overrides base_lr
        return mx.optimizer.create(case["optimizer"], **kw)


def name_of(case: dict) -> str:
    return next(k for k, v in cases().items() if v is case)


def resume(name: str):
    case = cases()[name]
    arrays = np.load(STATES / f"{name}.npz")
    params = {n: jnp.asarray(arrays[f"w0/{n}"]) for n in case["order"]}
    if case["kind"] == "module":
        r = load_states(
            STATES / f"{name}.states",
            params,
            optimizer=module_optimizer(case),
            symbol=STATES / f"{name}-symbol.json",
            begin_num_update=case["begin_num_update"],
        )
    else:
        r = load_states(STATES / f"{name}.states", params)
    return case, arrays, params, r


@pytest.mark.parametrize("name", sorted(cases()))
def test_continues_as_mxnet(name: str) -> None:
    case, arrays, params, r = resume(name)
    assert r.kind == case["kind"] and r.num_update == case["begin_num_update"]
    assert r.missing == ()
    step = jax.jit(r.optimizer.update)
    state = r.state
    for k in range(1, case["steps"] + 1):
        grads = {n: jnp.asarray(arrays[f"g{k}/{n}"]) for n in params}
        params, state = step(grads, state, params)
        for n in params:
            np.testing.assert_allclose(
                np.asarray(params[n], np.float64),
                arrays[f"w{k}/{n}"].astype(np.float64),
                err_msg=f"{name}: {n!r} after continued step {k}",
                **tolerance(case["dtype"]),
            )
