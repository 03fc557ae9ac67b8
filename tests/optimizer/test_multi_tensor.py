"""``multi_tensor=True``: small leaves share flat state buffers, with identical results."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer import MultiSlots
from mxjax.optimizer._multi import MAX_ELEMENTS, plan

NAMES = mx.optimizer.names()


def tree() -> dict:
    """Small float32 leaves (two groups: one has lr_mult), float16 leaves, one big leaf."""
    key = jax.random.key(3)
    shapes = {
        "fc_weight": (3, 4),
        "fc_bias": (4,),
        "conv_weight": (2, 3, 2, 2),
        "scale": (7,),
        "head_weight": (5, 2),
        "big_weight": (MAX_ELEMENTS + 1,),
        "h_weight": (6,),
        "h_bias": (2, 3),
    }
    return {
        k: (jax.random.normal(jax.random.fold_in(key, i), s) * 0.5).astype(
            jnp.float16 if k.startswith("h_") else jnp.float32
        )
        for i, (k, s) in enumerate(shapes.items())
    }


def grads(params: dict, step: int) -> dict:
    key = jax.random.key(100 + step)
    return {
        k: (jax.random.normal(jax.random.fold_in(key, i), v.shape) * 0.3).astype(
            v.dtype
        )
        for i, (k, v) in enumerate(params.items())
    }


def kwargs(name: str, params: dict) -> dict:
    kw = dict(
        rescale_grad=0.5,
        clip_gradient=0.4,
        multi_precision=True,
        lr_mult={k: 2.0 for k in ("head_weight", "scale") if k in params},
    )
    if name != "groupadagrad":
        kw["wd"] = 0.01
    return kw


def run(name: str, multi_tensor: bool, params: dict, steps: int = 3, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = mx.optimizer.create(
            name, multi_tensor=multi_tensor, **kwargs(name, params), **extra
        )
        state = opt.init(params)
    step = jax.jit(opt.update)
    for k in range(steps):
        params, state = step(grads(params, k), state, params)
    return opt, params, state


def leaves_equal(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", NAMES)
def test_same_params_as_per_leaf_bitwise(name: str) -> None:
    params = tree()
    if name == "groupadagrad":  # 2-D weights only
        params = {k: v for k, v in params.items() if v.ndim == 2}
    ref_opt, ref, ref_state = run(name, False, params)
    opt, got, state = run(name, True, params)
    leaves_equal(got, ref)
    assert int(state.count) == int(ref_state.count) == 3
    if opt.rule.elementwise:
        assert isinstance(state.slots, MultiSlots)
        # f32 lr_mult 1, f32 lr_mult 2, f16 (master copy): three groups; the big leaf alone
        assert len(state.slots.groups) == (3 if name != "groupadagrad" else 2)
        assert state.slots.leaves["fc_weight"] == ()
        if (
            "big_weight" in params
        ):  # a big leaf keeps its own slots, as on the reference
            leaves_equal(
                state.slots.leaves["big_weight"], ref_state.slots["big_weight"]
            )
    else:  # the flag is ignored: the reference layout
        assert not isinstance(state.slots, MultiSlots)
        leaves_equal(state.slots, ref_state.slots)


def test_eligible_optimizers() -> None:
    eligible = {n for n in NAMES if mx.optimizer.create(n).rule.elementwise}
    # random, index-dependent and whole-leaf algorithms keep the per-leaf path
    assert not eligible & {
        "sgld",
        "nadam",
        "lbsgd",
        "lamb",
        "lans",
        "lars",
        "groupadagrad",
    }
    assert {
        "sgd",
        "adam",
        "rmsprop",
        "adagrad",
        "adadelta",
        "ftrl",
        "signum",
    } <= eligible


def test_skip_nonfinite_leaves_everything_untouched() -> None:
    params = tree()
    opt = mx.optimizer.create(
        "adam", multi_tensor=True, skip_nonfinite=True, multi_precision=True
    )
    state = opt.init(params)
    g = grads(params, 0)
    g["fc_bias"] = g["fc_bias"].at[1].set(jnp.nan)
    new_params, new_state = jax.jit(opt.update)(g, state, params)
    leaves_equal(new_params, params)
    zero = jnp.zeros((), jnp.int32)
    leaves_equal(new_state._replace(skipped=zero), state._replace(skipped=zero))
    assert int(new_state.skipped) == 1


def small_tree(n: int = 40) -> dict:
    return {
        f"layer{i}": jnp.full((3 + i % 4, 5), 0.1 * i, jnp.float32) for i in range(n)
    }


ARRAY_COPY = re.compile(r"= \w+\[\d[\d,]*\]\{[\d,]*\} copy\(")


@pytest.mark.parametrize(
    "name", ["sgd", "adam", "rmsprop", "adagrad", "adadelta", "signum"]
)
def test_naive_donated_jit_copies_no_array(name: str) -> None:
    """``jax.jit(opt.update, donate_argnums=(1, 2))``: flat slots never share a
    parameter's shape, so JAX pairs every donated buffer with its own successor.

    (Ftrl, DCASGD and AdaBelief read a slot's old value after writing its new one, so
    XLA copies that slot on either layout; see tests/optimizer/test_in_place.py.)"""
    params = small_tree()
    kw = {"momentum": 0.9} if name == "sgd" else {}
    opt = mx.optimizer.create(name, multi_tensor=True, **kw)
    state = opt.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    hlo = (
        jax.jit(opt.update, donate_argnums=(1, 2))
        .lower(g, state, params)
        .compile()
        .as_text()
    )
    assert not ARRAY_COPY.findall(hlo)
    ref = mx.optimizer.create(name, multi_tensor=False, **kw)
    hlo_ref = jax.jit(ref.update, donate_argnums=(1, 2)).lower(
        g, ref.init(params), params
    )
    assert ARRAY_COPY.findall(
        hlo_ref.compile().as_text()
    )  # what the flat layout avoids


def test_slot_shape_never_equals_a_parameter_shape() -> None:
    params = {
        "a": jnp.ones((2,)),
        "b": jnp.ones((4,)),
        "c": jnp.ones((1, 6), jnp.bfloat16),
    }
    opt = mx.optimizer.create("adam", multi_tensor=True, multi_precision=True)
    state = opt.init(params)
    ((m, v),) = state.slots.groups  # a and b; c is alone in its dtype
    assert m.shape == v.shape == (1, 1, 6)  # (1, 6) is c's shape
    g = jax.tree.map(lambda x: x * 0.5, params)
    new, _ = jax.jit(opt.update)(g, state, params)
    ref = mx.optimizer.create("adam", multi_precision=True)
    want, _ = jax.jit(ref.update)(g, ref.init(params), params)
    leaves_equal(new, want)


def test_plan_groups_by_dtype_and_multipliers() -> None:
    opt = mx.optimizer.create(
        "sgd", multi_tensor=True, lr_mult={"b": 0.5}, momentum=0.9
    )
    params = {
        "a": jnp.zeros((3,)),
        "b": jnp.zeros((3,)),
        "c": jnp.zeros((2, 2)),
        "d": jnp.zeros((5,), jnp.bfloat16),
        "e": jnp.zeros((5,), jnp.bfloat16),
        "f": jnp.zeros((MAX_ELEMENTS + 1,)),
        "g": jnp.zeros((0,)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = opt.init(params)
    assert [tuple(x.shape) for (x,) in state.slots.groups] == [(1, 7), (1, 10)]
    assert [[int(o) for o in offs] for offs in state.slots.offsets] == [[0, 3], [0, 5]]
    # "b" (its own lr_mult), the big leaf and the empty one stay per leaf
    per_leaf = state.slots.leaves
    assert per_leaf["a"] == () and per_leaf["c"] == () and per_leaf["d"] == ()
    assert len(per_leaf["b"]) == len(per_leaf["f"]) == len(per_leaf["g"]) == 1
    assert plan  # the planner is importable for tools


def test_state_from_the_other_layout_is_refused() -> None:
    params = small_tree(6)
    g = jax.tree.map(jnp.ones_like, params)
    flat = mx.optimizer.create("adam", multi_tensor=True)
    ref = mx.optimizer.create("adam")
    with pytest.raises(ValueError, match="multi-tensor layout"):
        flat.update(g, ref.init(params), params)
    with pytest.raises(ValueError, match="multi-tensor state"):
        ref.update(g, flat.init(params), params)
    other = dict(params, layer0=jnp.zeros((9, 9)))
    with pytest.raises(ValueError, match="multi-tensor layout"):
        flat.update(jax.tree.map(jnp.ones_like, other), flat.init(params), other)
    with pytest.raises(ValueError, match="multi-tensor layout"):
        flat.update(
            g,
            mx.optimizer.create("sgd", multi_tensor=True, momentum=0.9).init(params),
            params,
        )


def test_multi_tensor_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="multi_tensor"):
        mx.optimizer.create("adam", multi_tensor="yes")
