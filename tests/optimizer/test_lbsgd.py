"""LBSGD: accumulation, warmup, the scheduler count [Q5], validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_lbsgd_first_leaf_sees_the_count_before_the_increment_others_after():
    def sched(n):
        return jnp.where(n >= 1, 0.1, 1.0)  # 1.0 only for a pre-increment 0

    p = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
    g = {"a": jnp.ones(1), "b": jnp.ones(1)}
    opt = mx.optimizer.lbsgd(lr_scheduler=sched)
    new, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_allclose(new["a"], [-1.0])  # schedule(0) [Q5]
    np.testing.assert_allclose(new["b"], [-0.1])  # schedule(1)


def test_lbsgd_accumulates_batch_scale_micro_batches_then_steps_on_the_mean():
    opt = mx.optimizer.lbsgd(learning_rate=0.1, batch_scale=2, warmup_epochs=0)
    p = {"w": jnp.zeros(2)}
    state = opt.init(p)
    p1, state = opt.update({"w": jnp.array([1.0, 2.0])}, state, p)
    np.testing.assert_array_equal(p1["w"], p["w"])  # micro-batch: no step
    p2, state = opt.update({"w": jnp.array([3.0, 4.0])}, state, p1)
    # warmup over: lr·batch_scale on the mean gradient
    np.testing.assert_allclose(p2["w"], -0.1 * 2 * np.array([2.0, 3.0]), rtol=1e-6)
    p3, _ = opt.update({"w": jnp.array([5.0, 5.0])}, state, p2)
    np.testing.assert_array_equal(p3["w"], p2["w"])  # the accumulator was reset


@pytest.mark.parametrize("strategy", ["linear", "power2", "sqrt"])
def test_lbsgd_warmup_multiplier(strategy):
    opt = mx.optimizer.lbsgd(
        learning_rate=1.0,
        batch_scale=4,
        warmup_epochs=2,
        updates_per_epoch=4,
        warmup_strategy=strategy,
        begin_epoch=0,
    )
    p, g = {"w": jnp.zeros(1)}, {"w": jnp.ones(1)}
    state = opt.init(p)
    for _ in range(3):  # k = 1, 2, 3: no macro step (batch_scale 4)
        p, state = opt.update(g, state, p)
    p, _ = opt.update(g, state, p)  # k = 4: mult(4) with N = 8
    want = (
        1 + 3 * {"linear": 4 / 8, "power2": 16 / 64, "sqrt": np.sqrt(4 / 8)}[strategy]
    )
    np.testing.assert_allclose(p["w"], [-want], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(warmup_strategy="cosine"), "warmup_strategy"),
        (dict(batch_scale=0), "batch_scale"),
        (dict(updates_per_epoch=0), "updates_per_epoch"),
        (dict(begin_epoch=-1), "begin_epoch"),
        (dict(warmup_epochs=1.5), "warmup_epochs"),
        (dict(momentum=-0.1), "momentum"),
    ],
)
def test_lbsgd_refuses_bad_hyperparameters(kwargs, match):
    float_for_int = isinstance(next(iter(kwargs.values())), float) and match != "momentum"
    with pytest.raises(TypeError if float_for_int else ValueError, match=match):
        mx.optimizer.lbsgd(**kwargs)
