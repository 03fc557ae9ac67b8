"""SGLD: parity of the deterministic part with MXNet 1.9.1, and the noise's law [Q13]."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from tests.helpers import optimizer_arrays, optimizer_cases, recorder
from tests.optimizer.test_parity_mxnet import build, tolerance

CASES = sorted(optimizer_cases("sgld"))


def remove_noise(opt, grads, state, params, new_params, new_state):
    """Subtract the noise this update drew, as the recorder did on MXNet's side.

    The noise does not depend on the weights or gradients, so the same update on zero
    parameters (and a zero master copy) with zero gradients returns exactly the noise.
    """
    zero = lambda t: jax.tree.map(jnp.zeros_like, t)  # noqa: E731
    noise_p, noise_s = opt.update(
        zero(grads), state._replace(slots=zero(state.slots)), zero(params)
    )
    slots = jax.tree.map(lambda x, n: x - n, new_state.slots, noise_s.slots)
    masters = jax.tree.leaves(slots)  # only under multi_precision (SGLD has no slots)
    if masters:  # MXNet: w32 -= noise; weight = w32.astype(float16)
        leaves, treedef = jax.tree.flatten(new_params)
        new_params = jax.tree.unflatten(
            treedef, [m.astype(x.dtype) for m, x in zip(masters, leaves)]
        )
    else:
        new_params = jax.tree.map(lambda x, n: x - n, new_params, noise_p)
    return new_params, new_state._replace(slots=slots)


@pytest.fixture
def fast_noise():
    """The noise is removed before the comparison, so its generator is free: XLA
    compiles RngBitGenerator far faster than threefry's unrolled rounds (CI time)."""
    before = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    yield
    jax.config.update("jax_default_prng_impl", before)


@pytest.mark.parametrize("cid", CASES)
def test_sgld_deterministic_part_matches_mxnet_every_step(cid, fast_noise):
    rec = optimizer_cases("sgld")[cid]
    assert rec["noise"] == "removed"
    arrays = optimizer_arrays("sgld")
    opt = build(rec)
    w0, grads = recorder().inputs(rec["shapes"], rec["dtype"], rec["seed"], rec["steps"])
    names = rec["names"]
    params = {n: jnp.asarray(w) for n, w in zip(names, w0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float16 without multi_precision
        state = opt.init(params)

    @jax.jit
    def step(g, state, params):
        new_params, new_state = opt.update(g, state, params)
        return remove_noise(opt, g, state, params, new_params, new_state)

    for k, g in enumerate(grads, start=1):
        params, state = step({n: jnp.asarray(x) for n, x in zip(names, g)}, state, params)
        for i, n in enumerate(names):
            want = arrays[f"{cid}/w{k}/{i}"]
            got = np.asarray(params[n])
            assert got.dtype == want.dtype
            np.testing.assert_allclose(
                got.astype(np.float64),
                want.astype(np.float64),
                err_msg=f"sgld {cid}: parameter {n!r} after step {k}",
                **tolerance(rec["dtype"]),
            )


def test_sgld_step_has_mean_minus_half_lr_grad_and_variance_lr():
    lr, wd = 0.04, 0.5
    w = jnp.full((200_000,), 2.0)
    g = jnp.full((200_000,), 3.0)
    opt = mx.optimizer.sgld(learning_rate=lr, wd=wd, seed=7)
    new, _ = jax.jit(opt.update)(g, opt.init(w), w)
    step = np.asarray(new - w, np.float64)
    n = step.size
    mean = -lr / 2 * (3.0 + wd * 2.0)
    assert abs(step.mean() - mean) < 5 * np.sqrt(lr / n)
    assert abs(step.var() - lr) < 5 * lr * np.sqrt(2 / n)


def test_sgld_noise_is_independent_across_leaves_and_steps():
    opt = mx.optimizer.sgld(learning_rate=1.0)
    p = {"a": jnp.zeros(50_000), "b": jnp.zeros(50_000)}
    zero = jax.tree.map(jnp.zeros_like, p)
    state = opt.init(p)
    p1, state = opt.update(zero, state, p)
    p2, _ = opt.update(zero, state, p1)
    draws = [p1["a"], p1["b"], p2["a"] - p1["a"]]
    corr = np.corrcoef(np.stack([np.asarray(x) for x in draws]))
    assert np.all(np.abs(corr[np.triu_indices(3, 1)]) < 0.03)


def test_sgld_same_seed_same_trajectory_other_seed_differs():
    p = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(4)}
    g = jax.tree.map(lambda x: 0.1 * x, p)

    def trajectory(seed):
        opt = mx.optimizer.sgld(learning_rate=0.01, seed=seed)
        params, state = p, opt.init(p)
        step = jax.jit(opt.update)
        for _ in range(3):
            params, state = step(g, state, params)
        return params

    a, b, c = trajectory(3), trajectory(3), trajectory(4)
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_sgld_carries_its_key_in_the_state():
    opt = mx.optimizer.sgld(seed=1)
    p = jnp.zeros(3)
    s0 = opt.init(p)
    np.testing.assert_array_equal(s0.extra, jax.random.key_data(jax.random.key(1)))
    _, s1 = opt.update(p, s0, p)
    assert not np.array_equal(s1.extra, s0.extra)


@pytest.mark.parametrize("seed", [1.5, "0", True])
def test_sgld_refuses_a_non_int_seed(seed):
    with pytest.raises(TypeError, match="seed"):
        mx.optimizer.sgld(seed=seed)
