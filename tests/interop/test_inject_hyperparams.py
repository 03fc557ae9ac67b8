"""``to_optax_factory`` + ``optax.inject_hyperparams``: the learning rate of an mxjax
optimizer can be changed or scheduled from optax's side."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax.adapters import from_optax_schedule, to_optax_factory

STEPS, SWITCH = 12, 6


def problem():
    k = jax.random.split(jax.random.key(5), 2)
    params = {"w": jax.random.normal(k[0], (3, 4))}
    grads = {"w": jax.random.normal(k[1], (STEPS, 3, 4))}
    return params, grads


def at(grads, i):
    """The i-th gradient of a stacked sequence."""
    return jax.tree.map(lambda g: g[i], grads)


def mx_run(opt, params, grads):
    state = opt.init(params)
    step = jax.jit(opt.update)
    for i in range(STEPS):
        params, state = step(at(grads, i), state, params)
    return params


def test_inject_hyperparams_changes_lr_mid_run():
    tx = optax.inject_hyperparams(to_optax_factory("adam", beta1=0.8))(
        learning_rate=0.1
    )
    params, grads = problem()
    state = tx.init(params)
    step = jax.jit(tx.update)
    p = params
    for i in range(STEPS):
        if i == SWITCH:
            state.hyperparams["learning_rate"] = jnp.asarray(0.01)
        u, state = step(at(grads, i), state, p)
        p = optax.apply_updates(p, u)

    def rate(n):  # MXNet numbering: update SWITCH + 1 is the first at 0.01
        return jnp.where(n <= SWITCH, 0.1, 0.01)

    want = mx_run(mx.optimizer.adam(learning_rate=rate, beta1=0.8), params, grads)
    np.testing.assert_allclose(p["w"], want["w"], rtol=1e-5, atol=1e-6)
    wrong = mx_run(mx.optimizer.adam(learning_rate=0.1, beta1=0.8), params, grads)
    assert not np.allclose(p["w"], wrong["w"], rtol=1e-3)


def test_inject_hyperparams_with_optax_schedule_matches_from_optax_schedule():
    f = optax.exponential_decay(0.1, 3, 0.5, staircase=True)
    tx = optax.inject_hyperparams(to_optax_factory(mx.optimizer.sgd, momentum=0.9))(
        learning_rate=f
    )
    params, grads = problem()
    state = tx.init(params)
    step = jax.jit(tx.update)
    p = params
    for i in range(STEPS):
        u, state = step(at(grads, i), state, p)
        p = optax.apply_updates(p, u)
    opt = mx.optimizer.sgd(learning_rate=from_optax_schedule(f), momentum=0.9)
    want = mx_run(opt, params, grads)
    np.testing.assert_allclose(p["w"], want["w"], rtol=1e-5, atol=1e-6)


def test_to_optax_factory_defaults_to_the_factorys_learning_rate():
    make = to_optax_factory("adam")
    params = {"w": jnp.ones(3)}
    tx = optax.inject_hyperparams(make)()
    state = tx.init(params)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.001)


def test_to_optax_factory_refuses_fixed_learning_rate():
    with pytest.raises(TypeError, match="learning_rate"):
        to_optax_factory("adam", learning_rate=0.1)


def test_to_optax_factory_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are"):
        to_optax_factory("no_such_optimizer")
