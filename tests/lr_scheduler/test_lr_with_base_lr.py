"""``with_base_lr``: MXNet's optimizer overwriting a scheduler's base_lr [Q1/Q33]."""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import mxnet_lr_oracle as oracle
import numpy as np
import pytest
from lr_cases import assert_close, load

from mxjax import lr_scheduler, optimizer
from mxjax.optimizer._learning_rate import resolve_learning_rate

WARM = {"base_lr": 0.1, "warmup_steps": 6, "warmup_begin_lr": 0.01}
CONFIGS = [
    ("FactorScheduler", {"step": 4, "factor": 0.5, "stop_factor_lr": 1e-4, **WARM}),
    ("MultiFactorScheduler", {"step": [3, 9, 14], "factor": 0.5, **WARM}),
    ("PolyScheduler", {"max_update": 25, "pwr": 2, "final_lr": 0.001, **WARM}),
    ("CosineScheduler", {"max_update": 25, "final_lr": 0.001, **WARM}),
]
NS = list(range(0, 40))


def _values(sched):
    return np.asarray(jax.vmap(sched)(jnp.asarray(NS)), np.float64)


@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=[c for c, _ in CONFIGS])
@pytest.mark.parametrize("new_lr", [0.001, 0.5])
def test_with_base_lr_equals_mxnet_after_overwrite(cls_name, kwargs, new_lr):
    sched = getattr(lr_scheduler, cls_name)(**kwargs).with_base_lr(new_lr)
    assert_close(_values(sched), oracle.run(cls_name, kwargs, NS, base_lr=new_lr))


@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=[c for c, _ in CONFIGS])
def test_with_base_lr_keeps_warmup_target_and_original(cls_name, kwargs):
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    before = _values(sched)
    new = sched.with_base_lr(0.003)
    assert type(new) is type(sched) and new is not sched
    assert new.base_lr == 0.003 and sched.base_lr == kwargs["base_lr"]
    assert new.warmup_final_lr == sched.warmup_final_lr == kwargs["base_lr"]
    np.testing.assert_array_equal(_values(sched), before)  # the original is untouched
    warm = np.asarray(NS) < kwargs["warmup_steps"]
    np.testing.assert_array_equal(_values(new)[warm], before[warm])  # ramps to 0.1
    # overwriting twice is overwriting once with the last value
    assert sched.with_base_lr(0.7).with_base_lr(0.003) == new


@pytest.mark.parametrize("cls_name", ["PolyScheduler", "CosineScheduler"])
def test_poly_cosine_values_ignore_the_overwrite(cls_name):
    kwargs = dict(CONFIGS)[cls_name]
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    assert sched.with_base_lr(0.5).base_lr_orig == kwargs["base_lr"]
    np.testing.assert_array_equal(_values(sched.with_base_lr(0.5)), _values(sched))


@pytest.mark.parametrize("cls_name", ["FactorScheduler", "MultiFactorScheduler"])
def test_factor_post_warmup_values_scale_with_the_overwrite(cls_name):
    kwargs = dict(CONFIGS)[cls_name]
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    after = np.asarray(NS) >= kwargs["warmup_steps"]
    assert (_values(sched.with_base_lr(0.05))[after] < _values(sched)[after]).all()


OVERWRITE = load("overwrite")
# one optimizer per behaviour: default lr overwrites (Adamax: 0.002), no overwrite
# (SGD), explicit learning_rate (Adam-lr); the parity tests replay all the recordings
RESOLVE = [c for c in OVERWRITE if c["name"].endswith(("-Adamax", "-SGD", "-Adam-lr"))]


def _optimizer_lr(case):
    """The learning_rate that mxjax's optimizer of the same name passes on: the
    explicit one, else its default (MXNet's class default, or None for SGD)."""
    factory = optimizer.registry.get(case["optimizer"])
    default = inspect.signature(factory).parameters["learning_rate"].default
    return case["optimizer_kwargs"].get("learning_rate", default)


@pytest.mark.parametrize("case", RESOLVE, ids=lambda c: c["name"])
def test_optimizer_resolution_reproduces_mxnet_overwrite(case):
    """mxjax's optimizer defaults plus resolve_learning_rate give MXNet's recorded
    sequence for a scheduler passed without learning_rate [Q1]."""
    if case["optimizer"] not in optimizer.registry:
        pytest.skip(f"mxjax has no {case['optimizer']} yet")
    lr = _optimizer_lr(case)
    sched = getattr(lr_scheduler, case["cls"])(**case["kwargs"])
    overwrites = lr is not None and lr != sched.base_lr
    assert overwrites == (case["base_lr_after"] != case["kwargs"]["base_lr"])
    if overwrites:
        with pytest.warns(UserWarning, match="overrides lr_scheduler.base_lr"):
            rate, _ = resolve_learning_rate(lr, sched)
    else:
        rate, _ = resolve_learning_rate(lr, sched)
    assert rate.base_lr == case["base_lr_after"]
    run = case["runs"][0]
    assert_close(jax.vmap(rate)(jnp.asarray(run["n"])), run["lr"])


def _lrs_seen(opt, steps):
    """The lr of each update: the step of a zero weight with gradient 1 (SGD: -lr;
    Adam with epsilon ~ 0: -lr, its bias corrections cancel for a constant gradient)."""
    params = {"w": jnp.zeros(())}
    state, update = opt.init(params), jax.jit(opt.update)
    out = []
    for _ in range(steps):
        new, state = update({"w": jnp.ones(())}, state, params)
        out.append(-float(new["w"]))
    return out


def _case(name):
    return next(c for c in OVERWRITE if c["name"] == name)


def test_sgd_end_to_end_keeps_scheduler_base_lr():
    case = _case("factor_w5_stop-SGD")
    sched = lr_scheduler.FactorScheduler(**case["kwargs"])
    got = _lrs_seen(optimizer.sgd(lr_scheduler=sched), 20)
    assert_close(got, case["runs"][0]["lr"][:20])


def test_adam_end_to_end_overwrites_scheduler_base_lr():
    case = _case("multifactor_w5_linear-Adam")
    sched = lr_scheduler.MultiFactorScheduler(**case["kwargs"])
    with pytest.warns(UserWarning, match="base_lr"):
        opt = optimizer.adam(lr_scheduler=sched, epsilon=1e-30)
    # Adam's own float32 round-off (bias corrections) is ~1e-5 relative
    assert_close(_lrs_seen(opt, 20), case["runs"][0]["lr"][:20], rtol=1e-4)


def test_scheduler_is_frozen():
    sched = lr_scheduler.FactorScheduler(step=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sched.base_lr = 0.5  # type: ignore[misc]
