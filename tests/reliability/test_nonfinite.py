"""``skip_nonfinite``: one bad batch cannot destroy a run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx

NAMES = mx.optimizer.names()


def grads_for(step: int):
    rs = np.random.RandomState(step)
    return {
        "fc_weight": jnp.asarray(rs.normal(size=(4, 3)), jnp.float32),
        "fc_bias": jnp.asarray(rs.normal(size=(3,)), jnp.float32),
    }


def poison(g, step):
    rs = np.random.RandomState(100 + step)
    name = ["fc_weight", "fc_bias"][rs.randint(2)]
    bad = [jnp.nan, jnp.inf, -jnp.inf][rs.randint(3)]
    flat = g[name].reshape(-1).at[rs.randint(g[name].size)].set(bad)
    return {**g, name: flat.reshape(g[name].shape)}


@pytest.mark.parametrize("name", NAMES)
def test_nan_steps_are_exactly_as_if_removed(name):
    opt = mx.optimizer.create(name, skip_nonfinite=True, wd=0.01)
    p0 = {"fc_weight": jnp.ones((4, 3)), "fc_bias": jnp.full(3, 0.5)}
    bad_steps = set(np.random.RandomState(len(name)).choice(12, 4, replace=False).tolist())
    step = jax.jit(opt.update)

    p, s = p0, opt.init(p0)
    for k in range(12):
        g = grads_for(k)
        p, s = step(poison(g, k) if k in bad_steps else g, s, p)
    assert int(s.skipped) == len(bad_steps)

    q, r = p0, opt.init(p0)
    for k in range(12):
        if k not in bad_steps:
            q, r = step(grads_for(k), r, q)
    for a, b in zip(jax.tree.leaves((p, s._replace(skipped=r.skipped))), jax.tree.leaves((q, r))):
        np.testing.assert_array_equal(a, b)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))


def test_without_the_option_a_nan_gradient_propagates_as_in_mxnet():
    opt = mx.optimizer.sgd(learning_rate=0.1)
    p = {"w": jnp.ones(2)}
    new, s = opt.update({"w": jnp.array([jnp.nan, 1.0])}, opt.init(p), p)
    assert bool(jnp.isnan(new["w"][0])) and int(s.skipped) == 0
