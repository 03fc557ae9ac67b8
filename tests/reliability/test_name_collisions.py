"""Leaf names that collide are refused where they matter, naming both paths, and
``wd_by_name`` matching no leaf warns (issue 19, item 8)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import mxjax as mx

COLLIDING = [
    ({"a_b": jnp.ones(2), "a": {"b": jnp.ones(2)}}, "a_b", ["['a_b']", "['a']['b']"]),
    ({"fc": [jnp.ones(2), jnp.ones(3)], "fc_0": jnp.ones(4)}, "fc_0", ["['fc'][0]", "['fc_0']"]),
    ({"x": {"y_z": jnp.ones(1)}, "x_y": {"z": jnp.ones(1)}}, "x_y_z", ["['x']['y_z']", "['x_y']['z']"]),
]


@pytest.mark.parametrize("tree,name,paths", COLLIDING)
@pytest.mark.parametrize("kind", ["lr_mult", "wd_mult"])
@pytest.mark.parametrize("multi_tensor", [False, True])
def test_a_multiplier_on_a_colliding_name_is_refused(tree, name, paths, kind, multi_tensor):
    opt = mx.optimizer.sgd(**{kind: {name: 2.0}}, multi_tensor=multi_tensor)
    with pytest.raises(ValueError, match="share an MXNet-style name") as e:
        opt.init(tree)
    assert all(p in str(e.value) for p in paths), e.value
    with pytest.raises(ValueError, match="share"):
        jax.jit(opt.update)(tree, None, tree)


@pytest.mark.parametrize("tree,name,paths", COLLIDING)
def test_a_collision_that_does_not_matter_is_accepted(tree, name, paths):
    opt = mx.optimizer.adam()
    new, _ = jax.jit(opt.update)(tree, opt.init(tree), tree)
    assert jax.tree.structure(new) == jax.tree.structure(tree)


@pytest.mark.parametrize("tree,name,paths", COLLIDING)
def test_init_params_refuses_colliding_names(tree, name, paths):
    with pytest.raises(ValueError, match="same key") as e:
        mx.initializer.init_params(mx.initializer.Uniform(), jax.random.key(0), tree)
    assert all(p in str(e.value) for p in paths)


def test_wd_by_name_matching_no_leaf_warns():
    flax_like = {"linear": {"kernel": {"value": jnp.ones((2, 2))}, "bias": {"value": jnp.ones(2)}}}
    opt = mx.optimizer.sgd(wd=0.1, wd_by_name=True)
    with pytest.warns(UserWarning, match="wd_by_name.*kernel"):
        opt.init(flax_like)
    opt.init({"fc_weight": jnp.ones(2), "fc_kernel": jnp.ones(2)})  # one matches: quiet
    mx.optimizer.sgd(wd_by_name=True).init(flax_like)  # wd = 0: nothing to decay anyway
