"""Run in a subprocess under given XLA flags (see test_rounding_under_jit.py).

``contracts``: prints whether this XLA contracts an unguarded ``a * b + c`` into an FMA;
``guards``: prints the guarded products that differ from NumPy's two roundings;
``steps PATH [flat]``: saves three jitted steps of every optimizer (two configurations
each; ``flat``: with ``multi_tensor=True``).
"""

from __future__ import annotations

import json
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import mxjax as mx
from mxjax.optimizer._rounding import no_contraction
from tests.optimizer.conftest import NO_WEIGHT_DECAY, TWO_D_ONLY

CONFIGS = (
    dict(wd=0.01, rescale_grad=0.37),
    dict(wd=0.1, rescale_grad=1.3, clip_gradient=0.8),
)


def tree(name: str, seed: int) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    shapes = {"fc_weight": (33, 17), "fc_bias": (33,)}
    if name in TWO_D_ONLY:
        shapes = {"fc_weight": (33, 17), "fc_bias": (1, 33)}
    return {k: jnp.asarray(rng.standard_normal(s).astype(np.float32)) for k, s in shapes.items()}


def steps(path: str, multi_tensor: bool = False) -> None:
    out = {}
    for name in mx.optimizer.names():
        for i, kw in enumerate(CONFIGS):
            if name in NO_WEIGHT_DECAY:
                kw = {**kw, "wd": 0.0}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = mx.optimizer.create(name, multi_tensor=multi_tensor, **kw)
            params = tree(name, 0)
            state = opt.init(params)
            step = jax.jit(opt.update)
            for k in range(3):
                params, state = step(tree(name, k + 1), state, params)
            for j, x in enumerate(jax.tree.leaves((params, state))):
                if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # SGLD's key
                    x = jax.random.key_data(x)
                out[f"{name}#{i}/{j}"] = np.asarray(x)
    np.savez(path, **out)


def guarded(f, count_known: bool):
    """``f`` jitted with its products guarded; the step count is an argument, or (as
    when ``init`` and ``update`` share one ``jit``) a constant of the program."""
    if count_known:
        return jax.jit(lambda *args: no_contraction(f, jnp.int32(5) + 2)(*args[:-1]))
    return jax.jit(lambda *args: no_contraction(f, args[-1])(*args[:-1]))


def guards() -> list[str]:
    """Guarded products against NumPy's float32 arithmetic (one rounding each)."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    cases = {
        "product_then_sum": (lambda a, b, c: a * b + c, (a, b, c), a * b + c),
        "two_products": (lambda a, b, c: a * b - c * a, (a, b, c), a * b - c * a),
        "square_then_sum": (lambda a, b, c: a**2 + c, (a, b, c), a * a + c),
        "product_then_scalar_then_sum": (
            lambda a, b, c: (a * b + np.float32(1e-3)) + c,
            (a, b, c),
            (a * b + np.float32(1e-3)) + c,
        ),
        "product_of_products": (
            lambda a, b, c: (a * np.float32(0.37)) * np.float32(0.01) + c,
            (a, b, c),
            (a * np.float32(0.37)) * np.float32(0.01) + c,
        ),
    }
    return [
        f"{label} (count known: {known})"
        for label, (f, args, want) in cases.items()
        for known in (False, True)
        if not np.array_equal(np.asarray(guarded(f, known)(*args, np.int32(7))), want)
    ]


def contracts() -> bool:
    """Whether this XLA contracts an unguarded ``a * b + c`` at all."""
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    got = np.asarray(jax.jit(lambda a, b, c: a * b + c)(a, b, c))
    return not np.array_equal(got, a * b + c)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "steps":
        steps(sys.argv[2], multi_tensor=sys.argv[3:] == ["flat"])
    else:
        print(json.dumps({"contracts": contracts, "guards": guards}[what]()))
