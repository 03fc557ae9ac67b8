"""Run in a subprocess under XLA's default CPU flags (see test_rounding_under_jit.py).

Prints one JSON object: for each check, the names of the cases that failed it.
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
from tests.optimizer.conftest import TWO_D_ONLY

# Eager JAX is not an oracle for these: it compiles `x / s` for a scalar `s` as
# `x * (1 / s)` (one rounding more than MXNet), while the jitted update, guarded,
# divides; test_division_is_a_true_division checks that guard against NumPy.
EAGER_REWRITES_DIVISION = {
    "ftml": "divides by scalar bias corrections and by the learning rate",
    "ftrl": "divides by the learning rate",
    "groupadagrad": "divides each row by its history's square root",
    "lans": "divides by the leaf's norms",
    "lamb": "divides by scalar bias corrections and the leaf's norms",
    "nadam": "divides by the scalar momentum schedule's corrections",
}
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


def jit_equals_eager() -> list[str]:
    """Names of (optimizer, config) whose jitted update differs from eager, bitwise."""
    failed = []
    for name in sorted(set(mx.optimizer.names()) - set(EAGER_REWRITES_DIVISION)):
        for i, kw in enumerate(CONFIGS):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = mx.optimizer.create(name, **kw)
            params, state = tree(name, 0), None
            state = opt.init(params)
            jitted = jax.jit(opt.update)
            p_j, s_j, p_e, s_e = params, state, params, state
            for k in range(3):
                g = tree(name, k + 1)
                p_j, s_j = jitted(g, s_j, p_j)
                with jax.disable_jit():
                    p_e, s_e = opt.update(g, s_e, p_e)
            same = all(
                np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
                for a, b in zip(jax.tree.leaves((p_j, s_j)), jax.tree.leaves((p_e, s_e)))
            )
            if not same:
                failed.append(f"{name}#{i}")
    return failed


def guards() -> list[str]:
    """The guards themselves, against NumPy's float32 arithmetic (one rounding each)."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    s = np.abs(rng.standard_normal(4096)).astype(np.float32) + np.float32(0.5)
    cases = {
        "product_then_sum": (lambda a, b, c: a * b + c, (a, b, c), a * b + c),
        "two_products": (lambda a, b, c: a * b - c * a, (a, b, c), a * b - c * a),
        "division_by_sqrt": (lambda a, s: a / jnp.sqrt(s), (a, s), a / np.sqrt(s)),
        "division_by_scalar": (
            lambda a, s: a / (s[0] * np.float32(3.1)),
            (a, s),
            a / (s[0] * np.float32(3.1)),
        ),
        "sum_of_squares": (
            lambda a: jnp.sum(a * a, keepdims=True) + a,
            (a,),
            None,  # compared with the same function evaluated eagerly below
        ),
    }
    failed = []
    for label, (f, args, want) in cases.items():
        got = np.asarray(jax.jit(no_contraction(f))(*args))
        if want is None:
            with jax.disable_jit():
                want = np.asarray(f(*map(jnp.asarray, args)))
        if not np.array_equal(got, want):
            failed.append(label)
    return failed


def unguarded_contracts() -> bool:
    """Whether this XLA contracts ``a * b + c`` at all (else the checks prove nothing)."""
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    got = np.asarray(jax.jit(lambda a, b, c: a * b + c)(a, b, c))
    return not np.array_equal(got, a * b + c)


if __name__ == "__main__":
    checks = sys.argv[1:] or ["contracts", "guards", "jit_equals_eager"]
    out: dict[str, object] = {}
    if "contracts" in checks:
        out["contracts"] = unguarded_contracts()
    if "guards" in checks:
        out["guards"] = guards()
    if "jit_equals_eager" in checks:
        out["jit_equals_eager"] = jit_equals_eager()
    print(json.dumps(out))
