"""DCASGD: the previous-weight state, the momentum path [Q12] and validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_dcasgd_state_starts_at_the_weight_and_tracks_it():
    opt = mx.optimizer.dcasgd(learning_rate=0.1)
    w = jnp.array([1.0, -2.0])
    state = opt.init(w)
    np.testing.assert_array_equal(state.slots["previous_weight"], w)
    new, state = opt.update(jnp.array([1.0, 1.0]), state, w)
    np.testing.assert_array_equal(state.slots["previous_weight"], w)  # w_prev = the weight before
    np.testing.assert_allclose(new, w - 0.1, rtol=1e-6)  # first step: plain SGD


def test_dcasgd_compensation_term_by_hand():
    lr, lam, wd = 0.1, 0.5, 0.2
    opt = mx.optimizer.dcasgd(learning_rate=lr, lamda=lam, wd=wd)
    w0, g = np.array([1.0]), np.array([2.0])
    state = opt.init(jnp.asarray(w0))
    w1, state = opt.update(jnp.asarray(g), state, jnp.asarray(w0))
    w2, _ = opt.update(jnp.asarray(g), state, w1)
    w1_ = w0 - lr * (g + wd * w0)
    w2_ = w1_ - lr * (g + wd * w1_ + lam * g * g * (w1_ - w0))
    np.testing.assert_allclose(w2, w2_, rtol=1e-6)


def test_dcasgd_momentum_accumulates_the_step():  # [Q12]: MXNet 1.9.1 crashes here
    lr, mu = 0.1, 0.9
    opt = mx.optimizer.dcasgd(learning_rate=lr, momentum=mu, lamda=0.0)
    w, g = jnp.array([1.0]), jnp.array([1.0])
    state = opt.init(w)
    w1, state = opt.update(g, state, w)
    w2, state = opt.update(g, state, w1)
    np.testing.assert_allclose(w1, [1.0 - lr], rtol=1e-6)
    np.testing.assert_allclose(w2, [1.0 - lr - (mu * lr + lr)], rtol=1e-6)
    np.testing.assert_allclose(state.slots["momentum"], [-(mu * lr + lr)], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(momentum=1.0), r"momentum must be real in \[0, 1\), got 1.0"),
        (dict(lamda=-0.5), r"lamda must be real in \[0, inf\), got -0.5"),
    ],
)
def test_dcasgd_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.dcasgd(**kwargs)
