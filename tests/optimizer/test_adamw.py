"""AdamW and AdaBelief (MXNet 2.0): decoupled wd, the rescale_grad=0 skip [Q26]."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_adamw_decoupled_wd_uses_the_bias_corrected_lr():
    p, g = {"w": jnp.array([2.0])}, {"w": jnp.array([0.5])}
    opt = mx.optimizer.adamw(learning_rate=0.1, wd=0.2)
    new, _ = opt.update(g, opt.init(p), p)
    eta_t = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    m, v = 0.1 * 0.5, 0.001 * 0.25
    np.testing.assert_allclose(
        new["w"], 2.0 - eta_t * (m / (np.sqrt(v) + 1e-6) + 0.2 * 2.0), rtol=1e-5
    )


@pytest.mark.parametrize("name", ["adamw", "adabelief"])
def test_rescale_grad_zero_skips_the_update_but_counts_it(name):
    p, g = {"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([0.5, 3.0])}
    opt = mx.optimizer.create(name, rescale_grad=0.0, wd=0.1)
    state = opt.init(p)
    new, new_state = opt.update(g, state, p)
    np.testing.assert_array_equal(new["w"], p["w"])
    assert int(new_state.count) == 1


def test_adabelief_adds_epsilon_to_s_every_step():
    p, g = {"w": jnp.zeros(1)}, {"w": jnp.zeros(1)}
    opt = mx.optimizer.adabelief(epsilon=1e-3)
    state = opt.init(p)
    for _ in range(3):
        p, state = opt.update(g, state, p)
    s = state.slots["var"]["w"]
    np.testing.assert_allclose(s[0], [1e-3 * (1 + 0.999 + 0.999**2)], rtol=1e-5)


@pytest.mark.parametrize("name", ["adamw", "adabelief"])
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(beta2=-0.1), "beta2"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(correct_bias=None), "correct_bias"),
    ],
)
def test_refuses_bad_hyperparameters(name, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mx.optimizer.create(name, **kwargs)
