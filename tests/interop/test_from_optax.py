"""``from_optax``: an optax transformation in mxjax's loop follows optax's own
trajectory bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax.adapters import from_optax, to_optax


def loss(params, x):
    return jnp.sum((params["w"] @ x - 1.0) ** 2) + jnp.sum(jnp.sin(params["b"]) ** 2)


def start():
    k = jax.random.split(jax.random.key(0), 3)
    params = {"w": jax.random.normal(k[0], (3, 4)), "b": jax.random.normal(k[1], (4,))}
    return params, jax.random.normal(k[2], (4,))


def optax_loop(tx, params, x, steps):
    """optax's own loop (jitted step); returns the final params and state."""

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p, x), s, p)
        return optax.apply_updates(p, updates), s

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def mxjax_loop(opt, params, x, steps):
    """mxjax's loop (jitted step); returns the final params and state."""

    @jax.jit
    def step(p, s):
        return opt.update(jax.grad(loss)(p, x), s, p)

    state = opt.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.adam(1e-2),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, b1=0.8)),
        lambda: optax.lion(1e-3),
    ],
    ids=["adam", "clip+adamw", "lion"],
)
def test_from_optax_equals_optax_trajectory_exactly(make):
    params, x = start()
    want = optax_loop(make(), params, x, 20)
    got = mxjax_loop(from_optax(make()), params, x, 20)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    for k in params:
        assert not np.allclose(want[0][k], params[k])


def test_from_optax_records_name_and_hyperparams():
    opt = from_optax(optax.sgd(0.1), name="optax_sgd", hyperparams={"lr": 0.1})
    assert opt.name == "optax_sgd"
    assert dict(opt.hyperparams) == {"lr": 0.1}
    assert repr(opt) == "optax_sgd(lr=0.1)"
    assert from_optax(optax.sgd(0.1)).name == "optax"


def test_from_optax_refuses_a_non_transformation():
    with pytest.raises(TypeError, match="optax transformation"):
        from_optax(mx.optimizer.create("adam"))  # type: ignore[arg-type]


def test_to_optax_of_from_optax_round_trips():
    params, x = start()
    want, _ = optax_loop(optax.adam(1e-2), params, x, 10)
    got, _ = optax_loop(to_optax(from_optax(optax.adam(1e-2))), params, x, 10)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
