"""The per-leaf path's compiled program: leaves of one shape share one XLA program.

XLA on the CPU compiles each distinct fused program (~10 ms each), so a per-leaf value
read inside a leaf's program (a slice of a vector, a power with the leaf's exponent)
makes the compile time grow with the number of leaves (issue 16). Nadam's momentum
schedule differs per leaf; it is computed once per step and handed to each leaf as a
scalar buffer of its own.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer._kernel_math import scaled_powers, unstack


def distinct_programs(n_leaves: int, name: str) -> int:
    """Distinct fused computations (up to instruction names) of ``name``'s jitted
    per-leaf step on ``n_leaves`` leaves of one shape."""
    params = {f"w{i:03d}": jnp.full((16,), 0.1 * (i + 1)) for i in range(n_leaves)}
    opt = mx.optimizer.create(name, multi_tensor=False)  # the per-leaf path
    step = mx.optimizer.jit_update(opt)
    text = step.lower(params, opt.init(params), params).compile().as_text()
    kinds = set()
    for comp in re.split(r"\n(?=%)", text):
        if not comp.startswith("%fused"):
            continue
        body = re.sub(r", metadata=\{[^}]*\}", "", comp.split("\n", 1)[1])
        kinds.add(_renamed(body))
    return len(kinds)


def _renamed(body: str) -> str:
    """``body`` with its instructions renamed in order of appearance."""
    names: dict[str, str] = {}
    return re.sub(r"%[\w.\-]+", lambda m: names.setdefault(m[0], f"%{len(names)}"),
                  body)


@pytest.mark.parametrize("name", ["nadam", "lamb"])
def test_leaves_of_one_shape_share_their_programs(name: str) -> None:
    assert distinct_programs(40, name) == distinct_programs(3, name)


@pytest.mark.parametrize("beta", [0.9, 0.5, 0.999, 0.0])
def test_scaled_powers_have_the_bits_of_static_powers_under_jit(beta: float) -> None:
    ks = [1, 2, 3, 7, 64, 159, 255, 256, 1000, 2047, 2100]

    @jax.jit
    def static(s):  # as the per-leaf kernels computed the schedule before
        return jnp.stack([(jnp.float32(beta) * s) ** k for k in ks])

    table = jax.jit(lambda s: scaled_powers(beta, s, max(ks)))
    for s in [0.5, 0.5017, 0.9731, 0.99999]:
        want = np.asarray(static(jnp.float32(s)))
        got = np.asarray(table(jnp.float32(s)))[np.asarray(ks) - 1]
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_unstack_keeps_every_bit() -> None:
    v = np.linspace(-3.0, 3.0, 130).astype(np.float32)
    v[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40]
    out = jax.jit(lambda x: jnp.stack(unstack(x)))(jnp.asarray(v))
    assert all(s.shape == () for s in jax.eval_shape(unstack, jnp.asarray(v)))
    np.testing.assert_array_equal(np.asarray(out).view(np.int32), v.view(np.int32))
