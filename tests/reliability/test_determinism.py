"""Determinism: same key -> same initial params; same seed -> same SGLD trajectory; the
jitted update is deterministic run to run.

A restored checkpoint continuing bit-exactly is tested in
tests/checkpoint/test_resume.py (``test_resume_in_fresh_process_is_bit_identical``,
every optimizer in
``test_every_optimizer_state_round_trips_bit_exact``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mxjax as mx
from mxjax import initializer as I

SHAPES = {
    "fc1": {"weight": (8, 5), "bias": (8,)},
    "bn": {"gamma": (8,), "beta": (8,), "moving_var": (8,)},
    "rnn": {"parameters": (2 * 4 * (4 * 3 + 4 * 4 + 8),)},
}
PER_PARAM = {"rnn_parameters": I.FusedRNN(I.Xavier(), 4, 1, "lstm")}
INITS = [I.Xavier(), I.Uniform(0.1), I.Normal(0.2), I.Orthogonal(), I.MSRAPrelu()]


def same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )


@settings(max_examples=5, deadline=None, database=None)
@given(init=st.sampled_from(INITS), seed=st.integers(0, 2**32 - 1))
def test_same_key_same_initial_params(init, seed):
    key = jax.random.key(seed)
    a = I.init_params(init, key, SHAPES, per_param=PER_PARAM)
    b = I.init_params(init, jax.random.key(seed), SHAPES, per_param=PER_PARAM)
    assert same(a, b)
    c = I.init_params(init, jax.random.key(seed + 1), SHAPES, per_param=PER_PARAM)
    assert not np.array_equal(c["fc1"]["weight"], a["fc1"]["weight"])  # the key matters


def sgld_run(seed, steps=3):
    opt = mx.optimizer.sgld(learning_rate=0.01, seed=seed)
    p = {"fc_weight": jnp.ones((3, 4)), "fc_bias": jnp.zeros(4)}
    s = opt.init(p)
    step = jax.jit(opt.update)
    traj = []
    for k in range(steps):
        g = jax.tree.map(lambda x, k=k: jnp.full_like(x, 0.1 * k), p)
        p, s = step(g, s, p)
        traj.append(p)
    return traj


def test_same_seed_same_sgld_trajectory(seed=2**40 + 3):
    a, b = sgld_run(seed), sgld_run(seed)
    assert same(a, b)
    assert not same(a, sgld_run(seed + 1))  # the seed matters
    assert not same(a[1], a[2])  # and the noise changes step to step


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_jitted_update_is_deterministic_run_to_run(name):
    kw = {"groupadagrad": {}}.get(name, {"wd": 0.01})
    opt = mx.optimizer.create(name, **kw)
    rs = np.random.RandomState(0)
    p = {
        "fc_weight": jnp.asarray(rs.normal(size=(16, 8)), jnp.float32),
        "fc_bias": jnp.asarray(rs.normal(size=(16, 1)), jnp.float32),
    }
    grads = [
        jax.tree.map(lambda x: jnp.asarray(rs.normal(size=x.shape), x.dtype), p)
        for _ in range(3)
    ]

    def run():
        step = jax.jit(opt.update)  # a fresh compile each time
        q, s = p, opt.init(p)
        for g in grads:
            q, s = step(g, s, q)
        return q, s

    assert same(run(), run())
