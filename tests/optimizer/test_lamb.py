"""LAMB: trust ratio, bounds [Q20], validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def run(opt, p, g):
    return opt.update(g, opt.init(p), p)[0]


def test_lamb_zero_bounds_are_ignored():
    p = {"w": jnp.array([3.0, 4.0])}
    g = {"w": jnp.array([1.0, -2.0])}
    base = run(mx.optimizer.lamb(learning_rate=0.1), p, g)
    zero = run(
        mx.optimizer.lamb(learning_rate=0.1, lower_bound=0.0, upper_bound=0), p, g
    )
    np.testing.assert_array_equal(base["w"], zero["w"])


def test_lamb_step_is_lr_times_clamped_weight_norm():
    p = {"w": jnp.array([3.0, 4.0])}  # ||w|| = 5
    g = {"w": jnp.array([1.0, -2.0])}
    for kw, r1 in (
        (dict(), 5.0),
        (dict(upper_bound=1.0), 1.0),
        (dict(lower_bound=8.0), 8.0),
    ):
        new = run(mx.optimizer.lamb(learning_rate=0.1, **kw), p, g)
        np.testing.assert_allclose(
            np.linalg.norm(new["w"] - p["w"]), 0.1 * r1, rtol=1e-5
        )


def test_lamb_zero_weight_uses_ratio_one():
    new = run(
        mx.optimizer.lamb(learning_rate=0.1),
        {"w": jnp.zeros(2)},
        {"w": jnp.array([1.0, -1.0])},
    )
    np.testing.assert_allclose(new["w"], [-0.1, 0.1], rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lower_bound=-1.0), "lower_bound"),
        (dict(upper_bound=float("inf")), "upper_bound"),
        (dict(lower_bound=2.0, upper_bound=1.0), "lower_bound"),
        (dict(beta1=1.0), "beta1"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(bias_correction="yes"), "bias_correction"),
    ],
)
def test_lamb_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mx.optimizer.lamb(**kwargs)
