"""Ftrl: the scheduler rule [Q1], the float32 state and argument validation."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


class Sched:
    base_lr = 0.5

    def __call__(self, n):
        return jnp.asarray(self.base_lr, jnp.float32)

    def with_base_lr(self, lr):
        raise AssertionError("Ftrl must not override the scheduler's base_lr")


def first_step(opt):
    w, g = jnp.array([0.3]), jnp.array([2.0])
    return opt.update(g, opt.init(w), w)[0]


def by_hand(lr, lamda1=0.01, beta=1.0, w=0.3, g=2.0, wd=0.0):
    z = g - abs(g) * w / lr
    n = g * g
    return (np.sign(z) * lamda1 - z) / ((beta + np.sqrt(n)) / lr + wd) * (abs(z) > lamda1)


def test_ftrl_first_step_by_hand():
    got = first_step(mx.optimizer.ftrl(lamda1=0.05, beta=2.0, wd=0.1))
    np.testing.assert_allclose(got, [by_hand(0.1, 0.05, 2.0, wd=0.1)], rtol=1e-6)


def test_ftrl_scheduler_wins_over_its_default_lr():  # [Q1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = mx.optimizer.ftrl(lr_scheduler=Sched())
    np.testing.assert_allclose(first_step(opt), [by_hand(0.5)], rtol=1e-6)


def test_ftrl_ignores_an_explicit_lr_with_a_scheduler_and_says_so():
    with pytest.warns(UserWarning, match="ignores learning_rate=0.2"):
        opt = mx.optimizer.ftrl(learning_rate=0.2, lr_scheduler=Sched())
    np.testing.assert_allclose(first_step(opt), [by_hand(0.5)], rtol=1e-6)


def test_ftrl_state_is_float32_for_low_precision_weights():
    opt = mx.optimizer.ftrl()
    w = jnp.ones((2, 3), jnp.bfloat16)
    with pytest.warns(UserWarning, match="Accumulating"):
        state = opt.init(w)
    assert all(s.dtype == jnp.float32 for s in state.slots.values())
    new, _ = opt.update(w, state, w)
    assert new.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lamda1=-0.1), r"lamda1 must be real in \[0, inf\), got -0.1"),
        (dict(beta=-1.0), "beta"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_ftrl_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.ftrl(**kwargs)
