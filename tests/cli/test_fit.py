"""mxjax.fit / mxjax.training: the loop, its history and the digits task."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax import training

B = 32


@pytest.fixture(scope="module")
def data():
    return training.load_digits(0.2, seed=0)


def _params(hidden=0, seed=0):
    return mx.initializer.init_params(
        mx.initializer.Uniform(1.0),
        jax.random.key(seed),
        training.mlp_shapes(hidden=hidden),
    )


def test_digits_split_is_real_and_disjoint(data):
    assert data.x_train.shape == (1438, 64) and data.x_val.shape == (359, 64)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min()
    assert data.x_train.max() == 1.0
    assert set(np.unique(data.y_train)) == set(range(10))
    both = np.concatenate([data.x_train, data.x_val])
    assert len(np.unique(both, axis=0)) > 1700  # a split, not a duplication


def test_batches_pad_like_ndarrayiter():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    batches = list(training.batch_iterator(x, y, 4, seed=None)(0))
    assert [len(b[1]) for b in batches] == [4, 4, 4]
    assert batches[-1][1].tolist() == [8, 9, 0, 1]  # last batch wraps around
    assert training.steps_per_epoch(10, 4) == 3
    a = [b[1].tolist() for b in training.batch_iterator(x, y, 5, seed=1)(0)]
    c = [b[1].tolist() for b in training.batch_iterator(x, y, 5, seed=1)(1)]
    assert a != c and sorted(sum(a, [])) == list(range(10))  # reshuffled per epoch


def test_fit_equals_manual_loop_and_keeps_inputs(data):
    sched = mx.lr_scheduler.FactorScheduler(step=5, factor=0.5, base_lr=0.1)
    opt = mx.optimizer.create(
        "sgd", learning_rate=0.1, momentum=0.9, lr_scheduler=sched, rescale_grad=1 / B
    )
    p0 = _params()
    batches = [
        (data.x_train[i : i + B], data.y_train[i : i + B]) for i in range(0, 4 * B, B)
    ]
    params, state, h = mx.fit(training.softmax_loss, p0, batches, opt, 3, has_aux=True)

    @jax.jit
    def manual_step(p, s, b):
        (loss, _), g = jax.value_and_grad(training.softmax_loss, has_aux=True)(p, b)
        return *opt.update(g, s, p), loss

    p, s = p0, opt.init(p0)
    losses = []
    for _ in range(3):
        for b in batches:
            p, s, loss = manual_step(p, s, b)
            losses.append(float(loss))
    np.testing.assert_allclose(
        params["fc"]["weight"], p["fc"]["weight"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(h.loss, losses, rtol=1e-5)
    assert int(state.count) == 12 == h.steps
    # the caller's params were copied before donation: still valid and unchanged
    assert float(jnp.abs(p0["fc"]["weight"]).sum()) > 0
    # lr per step: the schedule at num_update 1..12
    np.testing.assert_allclose(h.lr, [float(sched(n)) for n in range(1, 13)])
    assert h.lr[4] == pytest.approx(0.1) and h.lr[5] == pytest.approx(0.05)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3]
    assert set(h.metrics) == {"ce", "acc"} and h.metric.shape == (12,)
    assert h.epochs[-1]["lr"] == pytest.approx(h.lr[-1])
    assert h.epochs[0]["loss"] == pytest.approx(np.mean(h.loss[:4]))


def test_summed_loss_with_rescale_equals_mean_loss(data):
    """The CLI's MXNet-Module scaling (sum + rescale_grad=1/B) is the mean loss."""
    batches = [(data.x_train[:B], data.y_train[:B])]

    def mean_loss(p, b):
        return training.softmax_loss(p, b)[0] / B

    a = mx.fit(
        training.softmax_loss,
        _params(),
        batches,
        mx.optimizer.create("adam", learning_rate=0.01, rescale_grad=1 / B, wd=1e-3),
        2,
        has_aux=True,
    )
    b = mx.fit(
        mean_loss,
        _params(),
        batches,
        mx.optimizer.create("adam", learning_rate=0.01, wd=1e-3),
        2,
    )
    np.testing.assert_allclose(
        a.params["fc"]["weight"], b.params["fc"]["weight"], rtol=1e-5, atol=1e-7
    )


def test_fit_learns_digits(data):
    opt = mx.optimizer.create("adam", learning_rate=0.01, rescale_grad=1 / 128)
    it = training.batch_iterator(data.x_train, data.y_train, 128)
    val = {}

    def eval_fn(p):
        val["acc"] = float(training.accuracy(p, data.x_val, data.y_val))
        return {"val acc": val["acc"]}

    seen = []
    params, _, h = mx.fit(
        training.softmax_loss,
        _params(hidden=16),
        it,
        opt,
        10,
        has_aux=True,
        eval_fn=eval_fn,
        on_epoch=seen.append,
    )
    assert len(seen) == 10 and seen[-1]["val acc"] == val["acc"]
    assert val["acc"] > 0.85
    assert h.epochs[-1]["loss"] < h.epochs[0]["loss"]
    assert h.step_time > 0 and h.first_step_time > h.step_time
    assert "val acc" in h.table() and len(h.table().splitlines()) == 11


def test_max_steps_cuts_the_run():
    batches = [(jnp.ones((2, 64)), jnp.zeros(2, jnp.int32))] * 5
    opt = mx.optimizer.create("sgd", learning_rate=0.1)
    _, _, h = mx.fit(
        training.softmax_loss, _params(), batches, opt, 3, has_aux=True, max_steps=7
    )
    assert h.steps == 7 and [e["steps"] for e in h.epochs] == [5, 2]


def test_generator_used_up_is_an_error():
    gen = ((jnp.ones((2, 64)), jnp.zeros(2, jnp.int32)) for _ in range(2))
    opt = mx.optimizer.create("sgd")
    with pytest.raises(ValueError, match="no batch in epoch 2"):
        mx.fit(training.softmax_loss, _params(), gen, opt, 2, has_aux=True)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_num_epoch(bad):
    with pytest.raises(ValueError, match="num_epoch"):
        mx.fit(
            lambda p, b: 0.0, {"w": jnp.zeros(1)}, [0], mx.optimizer.create("sgd"), bad
        )


def test_learning_rate_at_follows_mxnet_override():
    """Adam without an explicit learning_rate overrides the scheduler's base_lr [Q1]."""
    sched = mx.lr_scheduler.FactorScheduler(step=10, factor=0.5, base_lr=1.0)
    with pytest.warns(UserWarning, match="overrides"):
        opt = mx.optimizer.create("adam", lr_scheduler=sched)
    assert float(training.learning_rate_at(opt, 1)) == pytest.approx(0.001)
    assert float(training.learning_rate_at(opt, 11)) == pytest.approx(0.0005)
    opt = mx.optimizer.create("adam", learning_rate=None, lr_scheduler=sched)
    assert float(training.learning_rate_at(opt, 11)) == pytest.approx(0.5)
    sgd = mx.optimizer.create("sgd")
    assert float(training.learning_rate_at(sgd, 3)) == pytest.approx(0.01)
    bare = mx.optimizer.Optimizer(init=lambda p: None, update=lambda g, s, p: (p, s))
    assert np.isnan(float(training.learning_rate_at(bare, 1)))


def test_progress_bar_auto_is_off_without_tty(capsys):
    from mxjax.training._fit import _progress_bar

    assert _progress_bar(None, 10**6) is None  # pytest's captured stdout: no TTY
    bar = _progress_bar(True, 3)
    assert bar is not None and bar.total == 3
    bar.close()


def test_progress_bar_runs(capsys):
    batches = [(jnp.ones((2, 64)), jnp.zeros(2, jnp.int32))] * 3
    seen = []
    mx.fit(
        training.softmax_loss,
        _params(),
        batches,
        mx.optimizer.create("sgd"),
        2,
        has_aux=True,
        progress=True,
        on_epoch=seen.append,
    )
    assert len(seen) == 2
    assert "6/6" in capsys.readouterr().err


def test_state_sharing_param_buffers_is_copied_before_donation():
    """DCASGD's initial state holds the weight itself (its previous-weight slot): the
    donated step must not be handed one buffer twice."""
    opt = mx.optimizer.create("dcasgd", learning_rate=0.1)
    batches = [(jnp.ones((2, 64)), jnp.zeros(2, jnp.int32))]
    _, state, h = mx.fit(
        training.softmax_loss, _params(), batches, opt, 2, has_aux=True
    )
    assert h.steps == 2 and int(state.count) == 2


def test_a_flat_state_trains_packed_parameters_and_the_loss_sees_the_tree():
    """multi_tensor="auto" keeps a many-leaf tree flat; fit then steps the parameters
    packed (opt.pack), the same numbers as a hand-written packed loop, while loss_fn
    and eval_fn get the tree."""
    n = mx.optimizer.AUTO_MIN_LEAVES + 4
    rng = np.random.default_rng(0)
    params = {f"w{i:03d}": jnp.asarray(rng.standard_normal(3), jnp.float32) for i in range(n)}
    batches = [jnp.asarray(rng.standard_normal(3), jnp.float32) for _ in range(4)]
    seen = []

    def loss_fn(p, b):
        seen.append(type(p))
        return sum(jnp.sum((w - b) ** 2) for w in p.values())

    opt = mx.optimizer.create("adam", learning_rate=0.1)
    packs = []
    spy = dataclasses.replace(opt, pack=lambda t: packs.append(1) or opt.pack(t))
    p, s, _ = mx.fit(loss_fn, params, batches, spy, num_epoch=2,
                     eval_fn=lambda p: {"n": len(p)})
    assert seen and set(seen) == {dict} and isinstance(p, dict)
    flat = mx.optimizer.layout_of(opt.init(params)) == "multi-tensor"
    assert len(packs) == int(flat)  # packed once, where the state is flat
    assert mx.optimizer.layout_of(s) == mx.optimizer.layout_of(opt.init(params))
    # the same steps by hand: packed where the layout is flat, else the tree
    q = opt.pack(params) if flat else params
    r = opt.init(q)
    grad = jax.jit(jax.grad(lambda q, b: loss_fn(q.unpack() if flat else q, b)))
    for _ in range(2):
        for b in batches:
            q, r = jax.jit(opt.update)(grad(q, b), r, q)
    want = q.unpack() if flat else q
    for k in params:
        np.testing.assert_array_equal(p[k], want[k])
    per_leaf = mx.optimizer.create("adam", learning_rate=0.1, multi_tensor=False)
    p2, _, _ = mx.fit(loss_fn, params, batches, per_leaf, num_epoch=2)
    for k in params:
        np.testing.assert_allclose(p[k], p2[k], rtol=1e-5, atol=1e-6)
