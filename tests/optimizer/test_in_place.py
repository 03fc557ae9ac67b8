"""``jit_update`` donates params and state so that XLA updates every buffer in place."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from tests.optimizer.conftest import shaped

# Optimizers whose compiled step still copies a parameter-sized buffer, and why.
# (XLA on CPU fuses a cheap producer into every consumer; when one consumer writes a
# donated buffer in place that another still reads, copy insertion adds a copy.)
KNOWN_ARRAY_COPIES = {
    "dcasgd": "the state keeps the previous weight: the old weight is read after the new one is written",
    "ftml": "the new weight reads both the old and the new d",
    "ftrl": "the new weight reads the old n through the sqrt(n + g^2) - sqrt(n) term",
    "adabelief": "the belief term reads the old and new first moment",
    "sgld": "random bits generation",
}


def tree():
    return {
        "conv_weight": jnp.ones((16, 8, 3, 3)),
        "fc_weight": jnp.ones((10, 72)),
        "fc_bias": jnp.ones((10, 1)),
        "out_weight": jnp.ones((4, 10)),
    }


def array_copies(hlo: str) -> list[str]:
    entry = hlo[hlo.index("ENTRY") :]
    return [
        line.strip()
        for line in entry.splitlines()
        if " copy(" in line and not line.strip().split("=")[1].strip().startswith(("s32[]", "f32[]", "u32[]"))
    ]


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_jit_update_compiles_without_array_copies(name):
    opt = mx.optimizer.create(name)
    p = shaped(name, tree())
    if name == "groupadagrad":  # 2-D weights only
        p = {k: v.reshape(v.shape[0], -1) for k, v in p.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = opt.init(p)
    copies = array_copies(mx.optimizer.jit_update(opt).lower(p, state, p).compile().as_text())
    if name in KNOWN_ARRAY_COPIES:
        assert copies, f"{name} no longer copies: remove it from KNOWN_ARRAY_COPIES"
    else:
        assert copies == []


def test_naive_donated_jit_pairs_buffers_wrongly_and_copies():
    # Why jit_update exists: the state argument comes before params, so JAX pairs each
    # new parameter with a donated state buffer of the same shape.
    opt = mx.optimizer.adam()
    p = tree()
    s = opt.init(p)
    naive = jax.jit(opt.update, donate_argnums=(1, 2)).lower(p, s, p).compile().as_text()
    assert array_copies(naive)


def test_jit_update_equals_update_and_donates():
    opt = mx.optimizer.adam(learning_rate=0.1, wd=0.01)
    p = tree()
    g = jax.tree.map(lambda x: x * 0.5, p)
    want, want_s = opt.update(g, opt.init(p), p)
    step = mx.optimizer.jit_update(opt)
    params, state = tree(), opt.init(tree())
    got, got_s = step(g, state, params)
    for a, b in zip(jax.tree.leaves((want, want_s)), jax.tree.leaves((got, got_s))):
        np.testing.assert_array_equal(a, b)
    assert all(x.is_deleted() for x in jax.tree.leaves(params))
