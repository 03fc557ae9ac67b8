"""Training cases shared by the checkpoint tests and the resume worker (run as a script
in a fresh process: ``python ckpt_cases.py DIR K N`` loads ``DIR/<case>.npz``, trains
updates K+1..N and writes ``DIR/<case>.out.npz``)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import mxjax as mx
from mxjax import checkpoint


def step_rate(num_update):
    """An MXNet-style step schedule (a callable hyperparameter)."""
    return jnp.where(num_update <= 3, 0.05, 0.01)


# case id -> (optimizer name, kwargs, param dtype)
CASES = {
    "adam_schedule": ("adam", {"learning_rate": step_rate, "wd": 1e-3}, jnp.float32),
    "nadam": ("nadam", {"learning_rate": 0.02}, jnp.float32),
    "sgd_mp_float16": (
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9, "multi_precision": True},
        jnp.float16,
    ),
    "adam_mp_bfloat16": (
        "adam",
        {"learning_rate": 0.01, "multi_precision": True},
        jnp.bfloat16,
    ),
}


def make(case: str):
    """``(optimizer, initial params, jitted step(params, state, i))`` for a case."""
    name, kwargs, dtype = CASES[case]
    opt = mx.optimizer.create(name, **kwargs)
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.standard_normal((3, 4)), dtype),
        "b": jnp.asarray(rng.standard_normal(4), dtype),
    }

    def loss(p, x):
        return jnp.sum((p["w"] @ x + p["b"][:3] - 1) ** 2).astype(jnp.float32)

    @jax.jit
    def step(p, s, x):
        return opt.update(jax.grad(loss)(p, x), s, p)

    return opt, params, step


def data(i: int) -> np.ndarray:
    """The i-th input (host-side, so the jitted step holds no RNG)."""
    return np.random.default_rng(1000 + i).standard_normal(4)


def train(step, params, state, start: int, stop: int):
    dtype = jax.tree.leaves(params)[0].dtype
    for i in range(start, stop):
        params, state = step(params, state, jnp.asarray(data(i), dtype))
    return params, state


def resume(directory: str, k: int, n: int) -> None:
    for case in CASES:
        opt, template, step = make(case)
        ckpt = checkpoint.load(
            f"{directory}/{case}.npz", optimizer=opt, like_params=template
        )
        params, state = train(step, ckpt.params, ckpt.state, k, n)
        checkpoint.save(f"{directory}/{case}.out.npz", state, params, optimizer=opt)


if __name__ == "__main__":
    resume(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
