"""``to_optax``: every registered optimizer, run as an optax transformation, follows its
own mxjax trajectory (alone, in ``optax.chain``, in ``optax.MultiSteps``,
under ``optax.apply_if_finite``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax.adapters import to_optax

STEPS = 20
RTOL, ATOL = 1e-5, 1e-6  # atol: FTRL-like kernels may set a weight to ~0
# Arguments that give an optimizer a state worth checking (momentum off = stateless).
KWARGS = {
    "sgd": {"momentum": 0.9},
    "ccsgd": {"momentum": 0.9},
    "nag": {"momentum": 0.9},
    "lars": {"learning_rate": 0.1, "eta": 0.5},  # the default eta barely moves
}


def make_opt(name: str) -> mx.optimizer.Optimizer:
    return mx.optimizer.create(name, **KWARGS.get(name, {}))


def problem(seed: int = 0, scale: float = 1.0):
    """Params and a fixed sequence of STEPS gradients (stacked on axis 0)."""
    k = jax.random.split(jax.random.key(seed), 4)
    # 2-D leaves only, so that GroupAdaGrad (2-D weights only) runs every test too.
    params = {"w": jax.random.normal(k[0], (3, 4)), "b": jax.random.normal(k[1], (1, 4))}
    grads = {
        "w": scale * jax.random.normal(k[2], (STEPS, 3, 4)),
        "b": scale * jax.random.normal(k[3], (STEPS, 1, 4)),
    }
    return params, grads


def run(step, state, params, grads):
    """Scan ``step(g, state, params) -> (params, state)`` over stacked grads."""

    def body(carry, g):
        p, s = carry
        p, s = step(g, s, p)
        return (p, s), None

    (params, state), _ = jax.lax.scan(body, (params, state), grads)
    return params


def mx_step(opt):
    return lambda g, s, p: opt.update(g, s, p)


def optax_step(tx):
    def step(g, s, p):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step


def assert_close_and_moved(got, want, start):
    for key in want:
        np.testing.assert_allclose(
            got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=key
        )
    moved = max(float(jnp.max(jnp.abs(want[k] - start[k]))) for k in want)
    assert moved > 1e-4, "the trajectory barely moves: the comparison proves nothing"


CLIP, K = 0.5, 4  # clip_by_global_norm bound; MultiSteps' every_k


@functools.cache
def trajectories(name: str) -> dict[str, tuple]:
    """``{variant: (got, want, start)}`` for one optimizer, in a single compile.

    ``plain``: ``to_optax(opt)`` alone; ``chain``: after ``clip_by_global_norm``
    (reference: ``opt.update`` on clipped grads); ``multisteps``: in ``MultiSteps`` with
    ``every_k_schedule=K`` (reference: ``opt.update`` on the mean of each K grads).
    """
    opt = make_opt(name)
    clip = optax.clip_by_global_norm(CLIP)
    plain = to_optax(opt)
    chained = optax.chain(clip, to_optax(opt))
    multi = optax.MultiSteps(to_optax(opt), every_k_schedule=K)
    p0, g0 = problem(seed=0)
    p1, g1 = problem(seed=1, scale=3.0)
    p2, g2 = problem(seed=2)
    mean_g2 = jax.tree.map(lambda g: g.reshape(STEPS // K, K, *g.shape[1:]).mean(1), g2)

    def clipped_mx(g, s, p):
        g, _ = clip.update(g, clip.init(p))
        return opt.update(g, s, p)

    @jax.jit
    def all_runs(p0, g0, p1, g1, p2, g2, mean_g2):
        return {
            "plain": (
                run(optax_step(plain), plain.init(p0), p0, g0),
                run(mx_step(opt), opt.init(p0), p0, g0),
            ),
            "chain": (
                run(optax_step(chained), chained.init(p1), p1, g1),
                run(clipped_mx, opt.init(p1), p1, g1),
            ),
            "multisteps": (
                run(optax_step(multi), multi.init(p2), p2, g2),
                run(mx_step(opt), opt.init(p2), p2, mean_g2),
            ),
        }

    out = all_runs(p0, g0, p1, g1, p2, g2, mean_g2)
    starts = {"plain": p0, "chain": p1, "multisteps": p2}
    return {k: (*v, starts[k]) for k, v in out.items()}


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_to_optax_matches_update_over_20_steps(name):
    assert_close_and_moved(*trajectories(name)["plain"])


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_to_optax_in_chain_after_clip_by_global_norm(name):
    g = jax.tree.map(lambda x: x[0], problem(seed=1, scale=3.0)[1])
    assert float(optax.tree.norm(g)) > 2 * CLIP, "the clip must be active"
    assert_close_and_moved(*trajectories(name)["chain"])


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_to_optax_in_multisteps_updates_every_k_with_mean_grad(name):
    assert_close_and_moved(*trajectories(name)["multisteps"])


@pytest.mark.parametrize("name", ["adam", "sgd", "nadam"])
def test_to_optax_under_apply_if_finite_skips_nan_step(name):
    opt = make_opt(name)
    tx = optax.apply_if_finite(to_optax(opt), max_consecutive_errors=3)
    params, grads = problem(seed=3)
    bad = 7
    poisoned = jax.tree.map(lambda g: g.at[bad].set(jnp.nan), grads)
    kept = jax.tree.map(lambda g: jnp.delete(g, bad, axis=0), grads)

    def step(g, s, p):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    got = jax.jit(lambda p, g: run(step, tx.init(p), p, g))(params, poisoned)
    want = jax.jit(lambda p, g: run(mx_step(opt), opt.init(p), p, g))(params, kept)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in got.values())
    assert_close_and_moved(got, want, params)


def test_to_optax_without_params_names_the_optimizer():
    tx = to_optax(mx.optimizer.create("adam", learning_rate=0.1))
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"adam\(.*learning_rate=0.1.*needs the param"):
        tx.update(params, state)


def test_to_optax_refuses_a_factory():
    with pytest.raises(TypeError, match="to_optax_factory"):
        to_optax(mx.optimizer.adam)  # type: ignore[arg-type]


def test_to_optax_updates_keep_param_dtype():
    opt = mx.optimizer.create("sgd", learning_rate=0.5, multi_precision=True)
    tx = to_optax(opt)
    params = {"w": jnp.ones(3, jnp.float16)}
    updates, _ = tx.update({"w": jnp.ones(3, jnp.float16)}, tx.init(params), params)
    assert updates["w"].dtype == jnp.float16
    np.testing.assert_array_equal(updates["w"], -0.5)
