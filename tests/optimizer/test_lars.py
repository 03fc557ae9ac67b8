"""LARS: name exemptions [Q17], momentum correction per call [Q18], validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_lars_exempts_names_ending_in_gamma_beta_bias_without_underscore():
    p = {"fcbias": jnp.full(3, 2.0), "fc_weight": jnp.full(3, 2.0)}
    g = {k: jnp.ones(3) for k in p}
    opt = mx.optimizer.lars(learning_rate=0.1, eta=0.25)  # eta·||w||/||g|| = 0.5
    new, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_allclose(new["fcbias"], 1.9, rtol=1e-6)  # plain lr
    np.testing.assert_allclose(new["fc_weight"], 2.0 - 0.1 * 0.5, rtol=1e-6)


def test_lars_momentum_correction_reaches_only_the_first_four_leaves():
    sched = lambda n: jnp.where(n >= 2, 0.05, 0.1)  # noqa: E731  halves at step 2
    names = [f"l{i}_bias" for i in range(6)]  # exempt: plain SGD with momentum
    p = {n: jnp.zeros(2) for n in names}
    g = {n: jnp.ones(2) for n in names}
    opt = mx.optimizer.lars(learning_rate=None, lr_scheduler=sched, momentum=0.9)
    state = opt.init(p)
    p, state = opt.update(g, state, p)  # mom = -0.1
    p, state = opt.update(g, state, p)
    for i, n in enumerate(names):
        mu = 0.9 * (0.5 if i < 4 else 1.0)  # [Q18]
        np.testing.assert_allclose(p[n], -0.1 + mu * -0.1 - 0.05, rtol=1e-6)


def test_lars_wd_by_name_keeps_decay_only_on_weight():
    opt = mx.optimizer.lars(wd=0.1, wd_by_name=True)
    p = {"bn_gamma": jnp.ones(2), "fc_weight": jnp.ones(2)}
    zero = {k: jnp.zeros(2) for k in p}
    new, _ = opt.update(zero, opt.init(p), p)
    np.testing.assert_array_equal(new["bn_gamma"], p["bn_gamma"])
    assert float(new["fc_weight"][0]) < 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(eta=-1.0), "eta"),
        (dict(eps=float("nan")), "eps"),
        (dict(momentum=1.5), "momentum"),
        (dict(momentum_correction=1), "momentum_correction"),
    ],
)
def test_lars_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mx.optimizer.lars(**kwargs)
