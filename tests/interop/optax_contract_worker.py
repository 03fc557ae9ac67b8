"""Run by test_optax_contract.py in a subprocess: ``JAX_ENABLE_X64=1`` and 4 host
devices. Prints ``ok <name>`` per optimizer that passes every check."""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import mxjax as mx
from mxjax.adapters import to_optax


def types(tree):
    """The tree's structure and each leaf's type (shape, dtype, weak type, sharding)."""
    return jax.tree.structure(tree), [jax.typeof(x) for x in jax.tree.leaves(tree)]


def check_float64(name: str) -> None:
    """float64 parameters: the state after update has init's types, both layouts."""
    for multi in (False, True):
        opt = mx.optimizer.create(name, multi_tensor=multi)
        p = {"w": jnp.ones((2, 3), jnp.float64), "v": jnp.full((1, 3), 0.5, jnp.float64)}
        state = opt.init(p)
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(opt.slots(state)))
        step = jax.jit(opt.update)
        new_p, new_s = step(p, state, p)
        new_p, new_s = step(p, new_s, new_p)
        assert types(new_s) == types(state), (name, multi, types(new_s), types(state))
        assert types(new_p) == types(p)
        assert step._cache_size() == 1, (name, multi)


def check_explicit_sharding(name: str) -> None:
    """Per-leaf slots sharded like their parameters from init on; types (sharding
    included) stable across a jitted update; tree_map_params gives the specs.
    (With multi_tensor=True the grouped slots are flat buffers shared by several
    parameters: they cannot follow a parameter's sharding.)"""
    mesh = jax.make_mesh((4,), ("x",), axis_types=(AxisType.Explicit,))
    specs = {"w": P("x", None), "v": P(None, "x")}
    with jax.set_mesh(mesh):
        p = {
            "w": jax.device_put(jnp.ones((4, 2), jnp.float32), specs["w"]),
            "v": jax.device_put(jnp.full((2, 4), 0.5, jnp.float32), specs["v"]),
        }
        opt = mx.optimizer.create(name, multi_precision=True)
        state = opt.init(p)
        for pname, slots in opt.slots(state).items():
            for slot, x in slots.items():
                if x.shape == p[pname].shape:
                    assert jax.typeof(x).sharding.spec == specs[pname], (name, pname, slot)
        _, new_s = jax.jit(opt.update)(p, state, p)
        assert types(new_s) == types(state), (name, types(new_s), types(state))
        tx = to_optax(opt)
        # multi_precision: float32 leaves have no master copy (None in its tree), so
        # f sees None there (optax's is_leaf, as for optax.masked's MaskedNode);
        # GroupAdaGrad's (rows, 1) history is not parameter-shaped: replicated here
        state_specs = optax.tree_utils.tree_map_params(
            tx,
            lambda x, sp, w: None if x is None else sp if x.shape == w.shape else P(),
            state,
            specs,
            p,
            transform_non_params=lambda _: P(),
            is_leaf=lambda x: x is None,
        )
        placed = jax.tree.map(
            lambda x, sp: jax.device_put(x, NamedSharding(mesh, sp)),
            state,
            state_specs,
            is_leaf=lambda x: isinstance(x, P),
        )
        got, want = opt.slots(placed), opt.slots(state)
        for pname, slots in want.items():
            for slot, x in slots.items():
                if x.shape == p[pname].shape:
                    assert jax.typeof(got[pname][slot]) == jax.typeof(x), (name, slot)


def main() -> None:
    assert jax.config.jax_enable_x64 and jax.device_count() == 4
    for name in mx.optimizer.names():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_float64(name)
            check_explicit_sharding(name)
        print("ok", name, flush=True)


if __name__ == "__main__":
    sys.exit(main())
