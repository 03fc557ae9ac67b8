"""Generic properties, checked for every registered optimizer."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from tests.optimizer.conftest import CONVERGE, shaped

NAMES = mx.optimizer.names()


def make_params(dtype=jnp.float32):
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "fc": {"weight": jax.random.normal(k1, (4, 3), dtype), "bias": jnp.zeros(3, dtype)},
        "out": [jax.random.normal(k2, (3,), dtype)],
    }


def make_grads(params, seed=1):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    )


def quiet_init(opt, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # low precision without mp
        return opt.init(params)


@pytest.mark.parametrize("name", NAMES)
def test_second_jitted_step_does_not_retrace(name):
    opt = mx.optimizer.create(name)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return opt.update(g, s, p)

    step = jax.jit(update, donate_argnums=(1, 2))
    params = shaped(name, make_params())
    state = opt.init(params)
    for seed in range(3):
        params, state = step(make_grads(params, seed), state, params)
    assert len(traces) == 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("mp", [False, True])
def test_update_keeps_dtypes_and_state_structure(name, dtype, mp):
    opt = mx.optimizer.create(name, multi_precision=mp)
    params = shaped(name, make_params(dtype))
    state = quiet_init(opt, params)
    new_params, new_state = jax.jit(opt.update)(make_grads(params), state, params)
    assert jax.tree.map(lambda x: x.dtype, new_params) == jax.tree.map(
        lambda x: x.dtype, params
    )
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)  # noqa: E731
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert shapes(new_state) == shapes(state)
    assert shapes(new_params) == shapes(params)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_parameter_sets_equals_loop(name):
    opt = mx.optimizer.create(name)
    batch = [shaped(name, make_params()) for _ in range(3)]
    batch = [jax.tree.map(lambda x, i=i: x + i, p) for i, p in enumerate(batch)]
    grads = [make_grads(p, seed=i) for i, p in enumerate(batch)]
    stack = lambda ts: jax.tree.map(lambda *x: jnp.stack(x), *ts)  # noqa: E731
    p_b, g_b = stack(batch), stack(grads)
    s_b = jax.vmap(opt.init)(p_b)
    got, _ = jax.jit(jax.vmap(opt.update))(g_b, s_b, p_b)
    for i in range(3):
        want, _ = opt.update(grads[i], opt.init(batch[i]), batch[i])
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            np.testing.assert_allclose(a, b[i], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_grad_flows_through_update(name):
    opt = mx.optimizer.create(name)
    params = shaped(name, make_params())
    grads = make_grads(params)
    state = opt.init(params)

    def loss(p, g):
        new, _ = opt.update(g, state, p)
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new))

    dp, dg = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, grads)
    assert jax.tree.structure(dp) == jax.tree.structure(params)
    leaves = jax.tree.leaves((dp, dg))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert any(float(jnp.max(jnp.abs(x))) > 0 for x in leaves)


def test_grad_through_sgd_is_exact():
    opt = mx.optimizer.sgd(learning_rate=0.25, wd=0.1)
    p, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5])
    state = opt.init(p)
    dp = jax.grad(lambda p: jnp.sum(opt.update(g, state, p)[0]))(p)
    dg = jax.grad(lambda g: jnp.sum(opt.update(g, state, p)[0]))(g)
    np.testing.assert_allclose(dp, [1 - 0.25 * 0.1] * 2, rtol=1e-6)
    np.testing.assert_allclose(dg, [-0.25] * 2, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
    assert name in CONVERGE, f"add convergence settings for {name!r} to conftest.py"
    opt = mx.optimizer.create(name, **CONVERGE[name])
    target = shaped(
        name, {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([[0.5, -0.5]])}
    )
    params = jax.tree.map(jnp.zeros_like, target)
    loss = lambda p: sum(  # noqa: E731
        0.5 * jnp.sum((x - t) ** 2) for x, t in zip(jax.tree.leaves(p), jax.tree.leaves(target))
    )

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            return opt.update(jax.grad(loss)(p), s, p), None

        (p, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=500)
        return p

    start = float(loss(params))
    final = float(loss(run(params)))
    assert final < 1e-3 * start, (start, final)
