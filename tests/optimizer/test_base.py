"""The shared MXNet behaviour of the optimizer base, written once, tested once."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mxjax as mx
from tests.optimizer.conftest import (
    NOT_FROZEN_BY_LR_MULT_0,
    NOT_RESCALE_INVARIANT,
    shaped,
    wd_for,
)

NAMES = mx.optimizer.names()


def params_and_grads(seed=0, dtype=jnp.float32):
    rs = np.random.RandomState(seed)
    p = {
        "fc_weight": rs.normal(size=(3, 4)),
        "fc_bias": rs.normal(size=(4,)),
        "bn_gamma": rs.normal(size=(2,)),
    }
    g = {k: rs.normal(size=v.shape) * 2 for k, v in p.items()}
    cast = lambda t: {k: jnp.asarray(v, dtype) for k, v in t.items()}  # noqa: E731
    return cast(p), cast(g)


def run(opt, params, grads, steps=3):
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(steps):
        params, state = step(grads, state, params)
    return params, state


def assert_trees_close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **tol)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from([n for n in NAMES if n not in NOT_RESCALE_INVARIANT]),
    c=st.sampled_from([0.125, 0.5, 4.0, 8.0]),
    wd=st.sampled_from([0.0, 0.01]),
    clip=st.sampled_from([None, 1.0]),
    seed=st.integers(0, 5),
)
def test_rescale_grad_c_on_g_over_c_equals_default(name, c, wd, clip, seed):
    p, g = shaped(name, params_and_grads(seed))
    base = dict(wd=wd_for(name, wd), clip_gradient=clip)
    want, _ = run(mx.optimizer.create(name, **base), p, g)
    got, _ = run(
        mx.optimizer.create(name, rescale_grad=c, **base),
        p,
        jax.tree.map(lambda x: x / c, g),
    )
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(NAMES), wd=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 5))
def test_lr_mult_zero_freezes_the_leaf(name, wd, seed):
    p, g = shaped(name, params_and_grads(seed))
    opt = mx.optimizer.create(name, wd=wd_for(name, wd), lr_mult={"fc_bias": 0.0})
    new, _ = run(opt, p, g)
    if name in NOT_FROZEN_BY_LR_MULT_0:
        assert not np.array_equal(new["fc_bias"], p["fc_bias"])
    else:
        np.testing.assert_array_equal(new["fc_bias"], p["fc_bias"])
    assert not np.array_equal(new["fc_weight"], p["fc_weight"])


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 5))
def test_multi_precision_on_float32_changes_nothing(name, seed):
    p, g = shaped(name, params_and_grads(seed))
    wd = wd_for(name, 0.01)
    a, sa = run(mx.optimizer.create(name, wd=wd), p, g)
    b, sb = run(mx.optimizer.create(name, wd=wd, multi_precision=True), p, g)
    for x, y in zip(jax.tree.leaves((a, sa)), jax.tree.leaves((b, sb))):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    low=st.sampled_from([jnp.bfloat16, jnp.float16]),
    seed=st.integers(0, 5),
)
def test_low_precision_with_mp_follows_the_float32_trajectory_cast(name, low, seed):
    p, g = shaped(name, params_and_grads(seed, low))  # representable in the low dtype
    up = lambda t: jax.tree.map(lambda x: x.astype(jnp.float32), t)  # noqa: E731
    ref = mx.optimizer.create(name, wd=wd_for(name, 0.01))
    opt = mx.optimizer.create(name, wd=wd_for(name, 0.01), multi_precision=True)
    p32, s32 = up(p), ref.init(up(p))
    s = opt.init(p)
    for _ in range(4):
        p32, s32 = ref.update(up(g), s32, p32)
        p, s = opt.update(g, s, p)
        for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(p32)):
            assert x.dtype == low
            np.testing.assert_array_equal(x, y.astype(low))


def test_wd_by_name_decays_only_weight_and_gamma():
    p, _ = params_and_grads()
    p = {**p, "weight": jnp.ones(2), "bn_beta": jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, p)
    new, _ = run(mx.optimizer.sgd(learning_rate=0.1, wd=0.5, wd_by_name=True), p, zero, 1)
    for name in p:
        decayed = name in ("fc_weight", "bn_gamma")  # MXNet Module's rule [Q2]
        np.testing.assert_allclose(new[name], p[name] * (0.95 if decayed else 1.0), rtol=1e-6)


def test_wd_mult_overrides_the_name_rule():
    p, _ = params_and_grads()
    zero = jax.tree.map(jnp.zeros_like, p)
    opt = mx.optimizer.sgd(learning_rate=0.1, wd=0.5, wd_by_name=True, wd_mult={"fc_bias": 2.0})
    new, _ = run(opt, p, zero, 1)
    np.testing.assert_allclose(new["fc_bias"], p["fc_bias"] * 0.9, rtol=1e-6)


def test_leaf_names_join_keys_and_indices():
    tree = {"fc": {"weight": 1, "bias": 2}, "layers": [{"w": 3}, 4]}
    assert mx.optimizer.leaf_names(tree) == ["fc_bias", "fc_weight", "layers_0_w", "layers_1"]


def test_unknown_mult_name_is_an_error():
    p, g = params_and_grads()
    opt = mx.optimizer.sgd(lr_mult={"fc_wieght": 2.0})
    with pytest.raises(ValueError, match="fc_wieght"):
        opt.init(p)


def test_begin_num_update_shifts_the_schedule_and_bias_correction():
    p, g = params_and_grads()
    sched = lambda n: 0.1 / n  # noqa: E731
    a = mx.optimizer.adam(learning_rate=None, lr_scheduler=sched, begin_num_update=4)
    state = a.init(p)
    assert int(state.count) == 4
    new, state = a.update(g, state, p)
    assert int(state.count) == 5
    # The same first step, written by hand from MXNet's Adam with t = 5 and lr(5).
    t, lr = 5, 0.1 / 5
    gw = np.asarray(g["fc_weight"], np.float64)
    m, v = 0.1 * gw, 0.001 * gw**2
    lr_t = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    want = np.asarray(p["fc_weight"], np.float64) - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(new["fc_weight"], want, rtol=1e-5)


def test_scheduler_sees_num_update_starting_at_one():
    seen = []
    opt = mx.optimizer.sgd(lr_scheduler=lambda n: (seen.append(n), 0.1)[1])
    p, g = params_and_grads()
    state = opt.init(p)
    for _ in range(3):
        p, state = opt.update(g, state, p)
    assert [int(n) for n in seen] == [1, 2, 3]


def test_default_lr_overrides_scheduler_base_lr_with_a_warning():
    class Sched:
        base_lr = 0.5

        def __call__(self, n):
            return jnp.asarray(self.base_lr, jnp.float32)

        def with_base_lr(self, lr):
            s = Sched()
            s.base_lr = lr
            return s

    with pytest.warns(UserWarning, match="overrides lr_scheduler.base_lr"):
        opt = mx.optimizer.adam(lr_scheduler=Sched())  # [Q1]: Adam's default 0.001 wins
    assert opt.hyperparams["learning_rate"] == 0.001
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mx.optimizer.sgd(lr_scheduler=Sched())  # SGD's default is None: no override


def test_float16_without_multi_precision_warns_as_mxnet():
    opt = mx.optimizer.sgd()
    with pytest.warns(UserWarning, match="Accumulating with float16"):
        opt.init({"w": jnp.ones(2, jnp.float16)})


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_trees_are_refused_at_trace_time_naming_the_leaf(name):
    opt = mx.optimizer.create(name)
    p, g = shaped(name, params_and_grads())
    state = opt.init(p)
    step = jax.jit(opt.update)
    with pytest.raises(ValueError, match="tree structure"):
        step({"fc_weight": g["fc_weight"]}, state, p)
    with pytest.raises(ValueError, match="'fc_bias'.*shape"):
        step({**g, "fc_bias": shaped(name, jnp.ones(5))}, state, p)
    with pytest.raises(TypeError, match="'bn_gamma'.*dtype int32"):  # a float is cast
        step({**g, "bn_gamma": g["bn_gamma"].astype(jnp.int32)}, state, p)
    if jax.tree.leaves(state.slots):  # a stateless optimizer has nothing to mismatch
        other = {**p, "fc_bias": shaped(name, jnp.ones(9))}
        with pytest.raises(ValueError, match="'fc_bias'"):
            step({**g, "fc_bias": other["fc_bias"]}, state, other)
        with pytest.raises(ValueError, match="tree"):
            step(g, opt.init(shaped(name, {"x": jnp.ones(3)})), p)


def test_state_from_another_optimizer_is_refused():
    p, g = params_and_grads()
    with pytest.raises(ValueError, match=r"expected the slots \['mean', 'var'\], got \['momentum'\]"):
        mx.optimizer.adam().update(g, mx.optimizer.sgd(momentum=0.9).init(p), p)


def test_update_without_params_is_a_clear_error():
    opt = mx.optimizer.adam()
    p, g = params_and_grads()
    with pytest.raises(ValueError, match="need the parameters"):
        opt.update(g, opt.init(p), None)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(wd=-1.0), "wd"),
        (dict(learning_rate=-0.1), "learning_rate"),
        (dict(rescale_grad=float("nan")), "rescale_grad"),
        (dict(begin_num_update=-1), "begin_num_update"),
        (dict(multi_precision=1), "multi_precision"),
        (dict(lr_mult={"a": "x"}), "lr_mult"),
        (dict(momentum=1.0), "momentum"),
        (dict(foo=1), "foo"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mx.optimizer.sgd(**kwargs)


def test_clip_gradient_zero_follows_mxnet_conventions():
    # [Q7]: 0 means "no clipping" for fused-op optimizers, "gradient := 0" for NDArray ones.
    p, g = params_and_grads()
    sgd0, _ = run(mx.optimizer.sgd(learning_rate=0.1, clip_gradient=0.0), p, g, 1)
    sgd, _ = run(mx.optimizer.sgd(learning_rate=0.1), p, g, 1)
    assert_trees_close(sgd0, sgd, rtol=0, atol=0)
    ada0, _ = run(mx.optimizer.adagrad(clip_gradient=0.0), p, g, 1)
    assert_trees_close(ada0, p, rtol=0, atol=0)
    with pytest.raises(ValueError, match="clip_gradient"):
        mx.optimizer.adagrad(clip_gradient=-1.0)


def test_skip_nonfinite_leaves_params_and_state_untouched():
    p, g = params_and_grads()
    opt = mx.optimizer.adam(skip_nonfinite=True)
    state = opt.init(p)
    p1, s1 = opt.update(g, state, p)
    bad = {**g, "fc_bias": g["fc_bias"].at[0].set(jnp.nan)}
    p2, s2 = opt.update(bad, s1, p1)
    assert_trees_close(p2, p1, rtol=0, atol=0)
    assert int(s2.count) == int(s1.count) and int(s2.skipped) == 1
    assert_trees_close(s2.slots, s1.slots, rtol=0, atol=0)


def test_user_optimizer_from_a_kernel_registers_and_runs():
    def sign_kernel(w, g, slots, h):
        return w - h.lr * jnp.sign(g), slots

    def signsgd(learning_rate=0.01, **common):
        rule = mx.optimizer.Rule(sign_kernel)
        return mx.optimizer.from_rule(
            rule, name="mysign", learning_rate=learning_rate, **common
        )

    mx.optimizer.register("MySign", signsgd)
    try:
        opt = mx.optimizer.create("mysign", learning_rate=0.5, rescale_grad=-1.0)
        new, _ = opt.update(jnp.array([2.0, -3.0]), opt.init(jnp.zeros(2)), jnp.zeros(2))
        np.testing.assert_array_equal(new, [0.5, -0.5])  # rescale_grad flips the sign
    finally:
        mx.optimizer.registry._entries.pop("mysign")


def test_unknown_optimizer_name_lists_valid_names():
    with pytest.raises(ValueError, match="adam.*sgd"):
        mx.optimizer.create("adamz")


@pytest.mark.parametrize("multi_tensor", [False, True])
def test_python_floats_and_numpy_float64_leaves_are_taken_as_jax_takes_them(multi_tensor):
    """A Python float is a float32 scalar, a NumPy float64 array float32 (without
    jax_enable_x64): the same step as on float32 arrays (issue 18 item 5, 19 item 7)."""
    opt = mx.optimizer.adam(learning_rate=0.1, multi_tensor=multi_tensor)
    loose = {"a": 1.0, "b": np.array([0.5, -2.0])}
    exact = {"a": jnp.float32(1.0), "b": jnp.array([0.5, -2.0], jnp.float32)}
    got = opt.update(loose, opt.init(loose), loose)
    want = opt.update(exact, opt.init(exact), exact)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "leaf,match",
    [
        (np.ones(2, np.int32), r"parameter 'bad' has dtype int32; expected a floating"),
        ("w", r"parameter 'bad' has type str; expected a floating"),
        (np.ones(2, np.complex64), r"parameter 'bad' has dtype complex64"),
    ],
)
def test_leaves_that_are_not_real_floats_are_refused_in_one_line(leaf, match):
    opt = mx.optimizer.adam(multi_tensor=True)
    params = {"ok": jnp.ones(2), "bad": leaf}
    for call in (opt.init, opt.pack):
        with pytest.raises(TypeError, match=match):
            call(params)


@pytest.mark.parametrize(
    "slots,error",
    [(("m", "m"), ValueError), (("weight_master_copy",), ValueError), ((1,), TypeError)],
)
def test_rule_slot_names_must_be_distinct_names(slots, error):
    """The state keys each slot tree by its name."""
    rule = mx.optimizer.Rule(lambda w, g, s, h: (w, s), slots=slots)
    with pytest.raises(error, match="Rule.slots"):
        mx.optimizer.from_rule(rule)
