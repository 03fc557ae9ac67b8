"""Packed parameters (``opt.pack``): the leaves in one flat buffer per group, updated by
one program per buffer, with the unpacked update's numbers bit for bit."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer import Packed
from mxjax.optimizer import _fused
from tests.helpers import kernel_loops
from tests.optimizer.test_multi_tensor import (
    KERNEL,
    grads,
    kwargs,
    leaves_close,
    leaves_equal,
    path,  # noqa: F401 - the fixture: the custom call and the XLA path
    run,
    same_as_op_by_op,
    tree,
)

RUNS = "custom call" if KERNEL else "xla"  # the path a plain step takes here

NAMES = mx.optimizer.names()
FAST = ["sgd", "adam", "lamb", "nadam", "dcasgd", "ftml", "rmsprop"]


def sorted_tree() -> dict:
    """In sorted order, as the updated params come out of a step (``grads`` draws by
    position)."""
    return dict(sorted(tree().items()))


def params_with_empty() -> dict:
    return dict(sorted({**tree(), "empty_weight": jnp.zeros((0, 3))}.items()))


def make(name: str, params: dict, multi_tensor: bool = True, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return mx.optimizer.create(
            name, multi_tensor=multi_tensor, **kwargs(name, params), **extra
        )


def run_packed(name: str, params: dict, steps: int = 3, multi_tensor: bool = True):
    """Like ``run``, on packed params; odd steps pass the grads as a plain tree."""
    opt = make(name, params, multi_tensor)
    packed = opt.pack(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = opt.init(packed)
    step = jax.jit(opt.update)
    for k in range(steps):
        g = grads(params, k)
        packed, state = step(g if k % 2 else opt.pack(g), state, packed)
    return opt, packed, state


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sgld"])  # SGLD: below
def test_packed_steps_equal_unpacked_steps_bitwise(name: str) -> None:
    params = params_with_empty()
    if name == "groupadagrad":  # 2-D weights only
        params = {k: v for k, v in params.items() if v.ndim == 2}
    _, want, want_state = run(name, True, params)
    opt, got, state = run_packed(name, params)
    assert isinstance(got, Packed)
    same_as_op_by_op(got.unpack(), want, RUNS)
    same_as_op_by_op(state, want_state, RUNS)


@pytest.mark.parametrize("name", FAST)
def test_packed_equals_unpacked_on_xla_and_interpreter(
    name: str, path, monkeypatch
) -> None:
    params = params_with_empty()
    with kernel_loops(monkeypatch, compiled=False):
        _, want, want_state = run(name, True, params)
        _, got, state = run_packed(name, params)
    if path == "xla":  # XLA may contract a leaf's multiply-adds differently (1 ulp)
        leaves_close(got.unpack(), want, rtol=2e-5)
        leaves_close(state, want_state, rtol=2e-5)
    else:
        leaves_equal(got.unpack(), want)
        leaves_equal(state, want_state)


@pytest.mark.parametrize("name", ["adam", "sgld"])
def test_packed_params_work_without_multi_tensor(name: str) -> None:
    params = {k: v for k, v in sorted_tree().items() if k != "big_weight"}
    _, want, _ = run(name, False, params)
    _, got, _ = run_packed(name, params, multi_tensor=False)
    leaves_equal(got.unpack(), want)


def test_one_custom_call_per_buffer_and_no_copies() -> None:
    params = {f"l{i}_weight": jnp.full((10 + i,), 0.5) for i in range(40)}
    opt = mx.optimizer.adam(multi_tensor=True, wd=0.1, lr_mult={"l7_weight": 2.0})
    packed = opt.pack(params)
    assert len(packed.buffers) == 2  # l7_weight has its own lr_mult: its own group
    state = opt.init(packed)
    g = jax.tree.map(jnp.ones_like, packed)
    for lowered in (
        mx.optimizer.jit_update(opt).lower(g, state, packed),
        jax.jit(opt.update, donate_argnums=(1, 2)).lower(g, state, packed),
    ):
        hlo = lowered.compile().as_text()
        assert hlo.count('custom_call_target="mxjax_elementwise"') == (2 if KERNEL else 0)
        copies = [
            line
            for line in hlo.splitlines()
            if " copy(" in line and "[]" not in line.split("=")[1].split("(")[0]
        ]
        assert copies == [] or not KERNEL  # (XLA's fusions copy: not in place)


def test_state_is_the_unpacked_multi_tensor_state() -> None:
    params = params_with_empty()
    opt = make("adam", params)
    g = grads(params, 0)
    p1, s1 = jax.jit(opt.update)(g, opt.init(params), params)
    packed = opt.pack(params)
    p2, s2 = jax.jit(opt.update)(g, opt.init(params), packed)  # unpacked init
    leaves_equal(s1, s2)
    leaves_equal(p2.unpack(), p1)
    p3, s3 = jax.jit(opt.update)(g, opt.init(packed), params)  # packed init
    leaves_equal(s3, s1)
    leaves_equal(p3, p1)


def test_unpack_gives_the_leaves_and_its_gradient_is_packed(path) -> None:
    params = params_with_empty()
    opt = make("adam", params)
    packed = opt.pack(params)
    leaves_equal(jax.jit(Packed.unpack)(packed), params)

    def loss(p):
        return sum(
            jnp.sum(jnp.sin(x.astype(jnp.float32)) * (i + 1))
            for i, x in enumerate(jax.tree.leaves(p))
        )

    g = jax.jit(jax.grad(lambda p: loss(p.unpack())))(packed)
    assert isinstance(g, Packed) and g.layout == packed.layout
    leaves_equal(g.unpack(), jax.jit(jax.grad(loss))(params))
    t = jax.tree.map(jnp.ones_like, packed)
    _, tangent = jax.jvp(lambda p: p.unpack()["big_weight"], (packed,), (t,))
    np.testing.assert_array_equal(tangent, np.ones(70_000, np.float32))


def test_a_layout_of_another_optimizer_is_unpacked_and_updated() -> None:
    params = sorted_tree()
    other = mx.optimizer.adam(multi_tensor=True, lr_mult={"fc_bias": 3.0})
    packed = other.pack(params)
    opt = make("adam", params)
    assert not opt.init(packed).slots.groups == ()  # init unpacks, makes its own groups
    _, want, _ = run("adam", True, params, steps=1)
    state = opt.init(packed)
    got, _ = jax.jit(opt.update)(grads(params, 0), state, packed)
    assert got.layout == packed.layout
    leaves_equal(got.unpack(), want)


def test_skip_nonfinite_keeps_packed_params() -> None:
    params = sorted_tree()
    opt = make("adam", params, skip_nonfinite=True)
    packed = opt.pack(params)
    state = opt.init(packed)
    g = grads(params, 0)
    g["fc_bias"] = g["fc_bias"].at[1].set(jnp.nan)
    new, new_state = jax.jit(opt.update)(g, state, packed)
    leaves_equal(new, packed)
    assert int(new_state.skipped) == 1


@pytest.mark.parametrize("multi_tensor", [True, False])  # buffers fit; unpacked
def test_warnings_point_at_the_caller(multi_tensor: bool) -> None:
    """pack, init and update warn at the line that called them, for a plain tree,
    packed params the layout steps whole, and packed params it unpacks."""
    params = {"a": jnp.ones(3, jnp.float16), "b": jnp.ones((2, 2), jnp.float16)}
    opt = mx.optimizer.adam(wd=0.1, wd_by_name=True, multi_tensor=multi_tensor)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        packed = opt.pack(params)
        for p in (params, packed):
            state = opt.init(p)
            opt.update(p, state, p)
    where = {(str(w.message)[:12], w.filename) for w in seen}
    assert where == {("wd_by_name=T", __file__), ("Accumulating", __file__)}


def test_bad_input_is_named() -> None:
    params = sorted_tree()
    opt = make("adam", params)
    packed = opt.pack(params)
    state = opt.init(packed)
    g = grads(params, 0)
    with pytest.raises(ValueError, match="'fc_bias'.*float32\\[5\\]"):
        opt.update({**g, "fc_bias": jnp.zeros(5)}, state, packed)
    with pytest.raises(ValueError, match="tree structure"):
        opt.update({k: v for k, v in g.items() if k != "scale"}, state, packed)
    other = mx.optimizer.adam(multi_tensor=True).pack(params)
    with pytest.raises(ValueError, match="another layout"):
        opt.update(other, state, packed)
    with pytest.raises(TypeError, match="packed already"):
        opt.pack(packed)
    with pytest.raises(TypeError, match="OptState"):
        opt.update(opt.pack(g), (), packed)


def test_an_optimizer_from_optax_cannot_pack() -> None:
    import optax

    opt = mx.adapters.from_optax(optax.sgd(0.1))
    with pytest.raises(NotImplementedError, match="cannot pack"):
        opt.pack(tree())


def test_a_state_for_other_parameters_is_refused_by_name() -> None:
    opt = mx.optimizer.adam(multi_tensor=True)
    state = opt.init({"a": jnp.zeros(3), "b": jnp.zeros(4)})
    other = {"a": jnp.zeros(3), "c": jnp.zeros(4)}  # same groups, other names
    with pytest.raises(ValueError, match="names differ at leaf 1.*'b'.*'c'"):
        opt.update(other, state, other)
    with pytest.raises(ValueError, match="names differ at leaf 1"):
        opt.update(opt.pack(other), state, opt.pack(other))


@pytest.mark.parametrize(
    "name, independent",
    [("sgd", True), ("adam", True), ("lamb", False), ("nadam", False), ("lans", False)],
)
def test_a_program_with_nothing_per_leaf_runs_the_buffer_as_one_leaf(
    name: str, independent: bool, monkeypatch
) -> None:
    calls: list = []
    run_call = _fused._call
    monkeypatch.setattr(_fused, "_call", lambda *a: calls.append(a) or run_call(*a))
    params = sorted_tree()
    _, want, _ = run(name, True, params, steps=2)
    _, got, _ = run_packed(name, params, steps=2)
    same_as_op_by_op(got.unpack(), want, RUNS)
    if not KERNEL:  # XLA runs every buffer
        assert calls == []
        return
    packed_sizes = [
        a[5] for a in calls if a[7]
    ]  # (program, rows, ws, gs, slots, sizes, base, packed)
    assert packed_sizes
    assert all((len(s) == 1) == independent for s in packed_sizes)
    assert all(_fused._leaf_independent(a[0].code) == independent for a in calls)


def test_checkpoint_of_packed_params_and_their_state(tmp_path) -> None:
    from mxjax import checkpoint

    params = params_with_empty()
    opt = make("adam", params)
    packed = opt.pack(params)
    state = opt.init(packed)
    step = jax.jit(opt.update)
    packed, state = step(grads(params, 0), state, packed)
    checkpoint.save(tmp_path / "ck.npz", state, packed, optimizer=opt)
    ck = checkpoint.load(tmp_path / "ck.npz", like_params=packed, optimizer=opt)
    assert isinstance(ck.params, Packed) and ck.params.layout == packed.layout
    leaves_equal(ck.state, state)
    want, _ = step(grads(params, 1), state, packed)
    got, _ = step(grads(params, 1), ck.state, ck.params)
    leaves_equal(got, want)
