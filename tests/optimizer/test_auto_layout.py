"""``multi_tensor="auto"`` (the default): which layout ``init`` keeps, and ``update``
following the state it is given (mxjax/optimizer/_choose.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax import _kernels
from mxjax.optimizer import AUTO_MIN_LEAVES, Rule, from_rule, layout_of

# the flat layout is chosen only where mxjax's CPU custom call runs (not under
# MXJAX_NO_KERNELS=1, which .ci/run also tests)
FLAT = "multi-tensor" if _kernels.available() else "per-leaf"


def tree(n: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    shapes = [(3, 5), (7,), (2, 2, 3)]
    return {
        f"layer{i:03d}_weight": jnp.asarray(
            rng.standard_normal(shapes[i % 3]).astype(np.float32)
        )
        for i in range(n)
    }


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "lamb", "nadam"])
def test_auto_is_flat_from_the_threshold_on(name: str) -> None:
    opt = mx.optimizer.create(name)
    assert layout_of(opt.init(tree(AUTO_MIN_LEAVES - 1))) == "per-leaf"
    assert layout_of(opt.init(tree(AUTO_MIN_LEAVES))) == FLAT
    # from shapes and dtypes alone, as from arrays
    structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree(40))
    assert layout_of(jax.eval_shape(opt.init, structs)) == FLAT


@pytest.mark.parametrize("name", ["sgld", "lars", "groupadagrad", "lbsgd"])
def test_optimizers_without_a_flat_layout_stay_per_leaf(name: str) -> None:
    params = {f"w{i:03d}": jnp.ones((3, 2)) for i in range(AUTO_MIN_LEAVES + 5)}
    assert layout_of(mx.optimizer.create(name).init(params)) == "per-leaf"


def test_true_and_false_force_the_layout() -> None:
    many, few = tree(AUTO_MIN_LEAVES + 1), tree(2)
    off = mx.optimizer.create("adam", multi_tensor=False)
    on = mx.optimizer.create("adam", multi_tensor=True)
    assert layout_of(off.init(many)) == "per-leaf"
    assert layout_of(on.init(few)) == "multi-tensor"


def test_a_user_rule_is_flat_only_where_it_says_it_is_elementwise() -> None:
    def kernel(w, g, slots, h):
        (m,) = slots
        m = 0.9 * m + g
        return w - h.lr * m, (m,)

    many = tree(AUTO_MIN_LEAVES + 3)
    unset = from_rule(Rule(kernel, slots=("m",)), learning_rate=0.1)
    declared = from_rule(Rule(kernel, slots=("m",), elementwise=True), learning_rate=0.1)
    assert layout_of(unset.init(many)) == "per-leaf"  # never refused unasked
    assert layout_of(declared.init(many)) == FLAT


def test_packed_parameters_are_flat() -> None:
    opt = mx.optimizer.create("adam")
    assert layout_of(opt.init(opt.pack(tree(3)))) == "multi-tensor"


def test_update_keeps_inits_choice_and_the_layouts_agree() -> None:
    """``update`` decides as ``init`` does (a state of the other layout is refused, as
    between ``True`` and ``False``); the two layouts give the same numbers (to the
    paths' stated bound: README, "The fast path")."""
    params, n = tree(AUTO_MIN_LEAVES + 2), AUTO_MIN_LEAVES + 2
    auto = mx.optimizer.create("adam", wd=0.01)
    per_leaf = mx.optimizer.create("adam", wd=0.01, multi_tensor=False)
    s1, s2 = per_leaf.init(params), auto.init(params)
    assert layout_of(s1) == "per-leaf" and layout_of(s2) == FLAT
    if FLAT == "multi-tensor":
        with pytest.raises(ValueError, match="multi-tensor layout"):
            auto.update(tree(n, seed=1), s1, params)
    p1, p2 = params, params
    for k in range(3):
        g = tree(n, seed=k + 1)
        p1, s1 = jax.jit(per_leaf.update)(g, s1, p1)
        p2, s2 = jax.jit(auto.update)(g, s2, p2)
    assert layout_of(s2) == FLAT
    for k in params:
        np.testing.assert_allclose(p1[k], p2[k], rtol=2e-6, atol=1e-7)
    for k, slots in per_leaf.slots(s1).items():
        for slot, x in slots.items():
            np.testing.assert_allclose(x, auto.slots(s2)[k][slot], rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("bad", ["yes", "Auto", 1, None])
def test_multi_tensor_takes_true_false_or_auto(bad: object) -> None:
    with pytest.raises(TypeError, match='multi_tensor must be True, False or "auto"'):
        mx.optimizer.create("adam", multi_tensor=bad)
