"""LANS (MXNet 2.0): per-tensor gradient normalisation, validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_lans_ignores_the_gradient_scale():
    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    g = jnp.array([0.3, 1.0, -2.0])
    opt = mx.optimizer.lans(learning_rate=0.1, wd=0.01)
    a, _ = opt.update({"w": g}, opt.init(p), p)
    b, _ = opt.update({"w": 1000 * g}, opt.init(p), p)
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-6)


def test_lans_step_norm_is_bounded_by_lr_times_weight_norm():
    p = {"w": jnp.array([3.0, 4.0])}
    opt = mx.optimizer.lans(learning_rate=0.1, upper_bound=1.0)
    new, _ = opt.update({"w": jnp.array([1.0, 2.0])}, opt.init(p), p)
    assert np.linalg.norm(new["w"] - p["w"]) <= 0.1 * 1.0 + 1e-6


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lower_bound=-1.0), "lower_bound"),
        (dict(lower_bound=3.0, upper_bound=2.0), "lower_bound"),
        (dict(beta1=2.0), "beta1"),
    ],
)
def test_lans_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.lans(**kwargs)
