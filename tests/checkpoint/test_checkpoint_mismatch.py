"""Loading into another optimizer, tree, shape or dtype is a ValueError naming it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import mxjax as mx
from mxjax import checkpoint
from mxjax.checkpoint import CheckpointError


def params_like(shape_w=(3, 4), dtype=jnp.float32, **extra):
    return {"w": jnp.ones(shape_w, dtype), "b": jnp.ones(4, dtype), **extra}


@pytest.fixture
def saved(tmp_path):
    opt = mx.optimizer.create("adam", learning_rate=0.1)
    params = params_like()
    params, state = opt.update(params, opt.init(params), params)
    path = tmp_path / "adam.npz"
    checkpoint.save(path, state, params, optimizer=opt)
    return path, opt, params, state


def load_error(path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        checkpoint.load(path, **kwargs)
    assert not isinstance(info.value, CheckpointError)
    return str(info.value)


def test_matching_load_succeeds(saved):
    path, opt, params, state = saved
    ckpt = checkpoint.load(path, optimizer=opt, like_params=params)
    assert int(ckpt.state.count) == 1
    assert ckpt.optimizer["name"] == "adam"


def test_other_optimizer_is_refused_by_name(saved):
    path, _, params, _ = saved
    msg = load_error(path, optimizer=mx.optimizer.create("sgd"), like_params=params)
    assert "'adam', not 'sgd'" in msg


def test_other_hyperparams_are_named(saved):
    path, _, params, _ = saved
    opt = mx.optimizer.create("adam", learning_rate=0.2, beta1=0.8)
    msg = load_error(path, optimizer=opt, like_params=params)
    assert "learning_rate: checkpoint 0.1, optimizer 0.2" in msg
    assert "beta1: checkpoint 0.9, optimizer 0.8" in msg
    ckpt = checkpoint.load(
        path, optimizer=opt, like_params=params, check_hyperparams=False
    )
    assert int(ckpt.state.count) == 1


def test_callable_hyperparams_compare_by_address_free_repr(tmp_path):
    def sched_a(n):
        return 0.1 * jnp.ones_like(n, jnp.float32)

    def sched_b(n):
        return 0.2 * jnp.ones_like(n, jnp.float32)

    params = params_like()
    opt = mx.optimizer.create("sgd", learning_rate=sched_a)
    checkpoint.save(tmp_path / "s.npz", opt.init(params), optimizer=opt)
    same = mx.optimizer.create("sgd", learning_rate=sched_a)
    checkpoint.load(tmp_path / "s.npz", optimizer=same, like_params=params)
    other = mx.optimizer.create("sgd", learning_rate=sched_b)
    msg = load_error(tmp_path / "s.npz", optimizer=other, like_params=params)
    assert "sched_a" in msg and "sched_b" in msg


def test_other_param_tree_names_the_leaves(saved):
    path, opt, _, _ = saved
    msg = load_error(path, optimizer=opt, like_params=params_like(c=jnp.ones(2)))
    assert "['c']" in msg and "not in the checkpoint" in msg


def test_other_shape_names_leaf_and_both_shapes(saved):
    path, opt, _, _ = saved
    msg = load_error(path, optimizer=opt, like_params=params_like(shape_w=(4, 3)))
    assert "state leaf ['slots']['w']['mean']" in msg
    assert "shape (3, 4)" in msg and "expected shape (4, 3)" in msg


def test_other_param_dtype_names_leaf_and_both_dtypes(saved):
    path, _, params, state = saved
    like = jax.tree.map(lambda x: x.astype(jnp.float16), params)
    msg = load_error(path, like_state=state, like_params=like)
    assert "params leaf ['b']" in msg and "dtype float32" in msg
    assert "expected shape (4,) dtype float16" in msg


def test_state_of_another_optimizer_is_refused_by_tree(saved):
    path, _, params, _ = saved
    sgd = mx.optimizer.create("sgd", momentum=0.9)
    msg = load_error(path, like_state=sgd.init(params))
    assert "['slots']['w']['var']" in msg and "not expected" in msg


def test_load_needs_a_template(saved):
    path, opt, params, _ = saved
    assert "like_state" in load_error(path, optimizer=opt)
    assert "like_state" in load_error(path, like_params=params)


def test_params_not_saved_are_none(tmp_path):
    opt = mx.optimizer.create("adam")
    params = params_like()
    checkpoint.save(tmp_path / "s.npz", opt.init(params), optimizer=opt)
    ckpt = checkpoint.load(tmp_path / "s.npz", optimizer=opt, like_params=params)
    assert ckpt.params is None and int(ckpt.state.count) == 0


def test_optimizer_check_needs_a_recorded_optimizer(tmp_path):
    opt = mx.optimizer.create("adam")
    params = params_like()
    checkpoint.save(tmp_path / "s.npz", opt.init(params))
    msg = load_error(tmp_path / "s.npz", optimizer=opt, like_params=params)
    assert "saved without optimizer=" in msg
    state = checkpoint.load(tmp_path / "s.npz", like_state=opt.init(params)).state
    assert int(state.count) == 0
