"""Signum / signSGD: the behaviours the MXNet recordings cannot show."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def one_step(opt, w, g):
    return opt.update(g, opt.init(w), w)[0]


def test_signsgd_ignores_rescale_grad_and_clip():  # [Q11]
    w, g = jnp.array([1.0, -1.0, 0.5]), jnp.array([2.0, -3.0, 0.0])
    plain = one_step(mx.optimizer.signum(learning_rate=0.1, momentum=0.0), w, g)
    odd = mx.optimizer.signum(
        learning_rate=0.1, momentum=0.0, rescale_grad=-4.0, clip_gradient=1e-3
    )
    np.testing.assert_array_equal(one_step(odd, w, g), plain)
    np.testing.assert_allclose(plain, [0.9, -0.9, 0.5], rtol=1e-6)  # sign(0) = 0


def test_signsgd_folds_wd_lh_into_wd():  # MXNet 1.9.1 crashes here; 2.0's rule
    w, g = jnp.array([1.0, -2.0]), jnp.array([1.0, 1.0])
    a = one_step(mx.optimizer.signum(learning_rate=0.1, momentum=0.0, wd_lh=0.3), w, g)
    b = one_step(mx.optimizer.signum(learning_rate=0.1, momentum=0.0, wd=0.3), w, g)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, (1 - 0.1 * 0.3) * np.array([1.0, -2.0]) - 0.1)


def test_signum_wd_lh_is_decoupled_and_momentum_is_negative_ema():
    opt = mx.optimizer.signum(learning_rate=0.1, momentum=0.9, wd_lh=0.5, wd=0.2)
    w, g = jnp.array([1.0]), jnp.array([-3.0])
    state = opt.init(w)
    new, state = opt.update(g, state, w)
    mom = state.slots["momentum"]
    np.testing.assert_allclose(mom, [-(0.1) * (0.2 * 1.0 - 3.0)], rtol=1e-6)
    np.testing.assert_allclose(new, [(1 - 0.1 * 0.5) * 1.0 + 0.1], rtol=1e-6)


def test_signum_default_lr_overrides_scheduler_base_lr():  # [Q1]
    class Sched:
        base_lr = 0.5

        def __call__(self, n):
            return jnp.asarray(self.base_lr, jnp.float32)

        def with_base_lr(self, lr):
            s = Sched()
            s.base_lr = lr
            return s

    with pytest.warns(UserWarning, match="overrides lr_scheduler.base_lr"):
        opt = mx.optimizer.signum(lr_scheduler=Sched(), momentum=0.0)
    w = jnp.array([1.0])
    np.testing.assert_allclose(one_step(opt, w, w), [0.99], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = mx.optimizer.signum(learning_rate=None, lr_scheduler=Sched(), momentum=0.0)
    np.testing.assert_allclose(one_step(kept, w, w), [0.5], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(momentum=1.0), r"momentum must be real in \[0, 1\), got 1.0"),
        (dict(momentum=-0.1), "momentum"),
        (dict(wd_lh=-1.0), r"wd_lh must be real in \[0, inf\), got -1.0"),
        (dict(wd_lh=float("nan")), "wd_lh"),
    ],
)
def test_signum_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.signum(**kwargs)
