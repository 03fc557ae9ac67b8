"""mxjax optimizers training flax models: ``flax.nnx.Optimizer`` through ``to_optax``,
and a plain ``jax.jit`` train step on a ``flax.linen`` model, with mxjax initializers as
``kernel_init`` (flax kernels are ``(in, out)``: ``in_axis=-2, out_axis=-1``).
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import linen, nnx

import mxjax as mx
from mxjax.adapters import to_optax

CLASSES, FEATURES, HIDDEN = 3, 4, 16
# mxjax initializers in flax's (in, out) kernel layout.
KERNEL_INIT = mx.initializer.Xavier(magnitude=2.0, in_axis=-2, out_axis=-1)
BIAS_INIT = mx.initializer.Uniform(0.01)


def test_mxjax_initializers_use_flax_fans():
    model = NnxMLP(nnx.Rngs(0))
    bound = np.sqrt(2.0 / ((FEATURES + HIDDEN) / 2))  # Xavier avg fan, magnitude 2
    kernel = np.asarray(model.hidden.kernel[...])
    assert kernel.shape == (FEATURES, HIDDEN)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound


def blobs(n: int = 96):
    """Three Gaussian blobs: a small, learnable classification problem."""
    kc, kx, ky = jax.random.split(jax.random.key(0), 3)
    centers = 2.0 * jax.random.normal(kc, (CLASSES, FEATURES))
    y = jax.random.randint(ky, (n,), 0, CLASSES)
    x = centers[y] + 0.5 * jax.random.normal(kx, (n, FEATURES))
    return x, y


def xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(FEATURES, HIDDEN, kernel_init=KERNEL_INIT, rngs=rngs)
        self.out = nnx.Linear(
            HIDDEN, CLASSES, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT, rngs=rngs
        )

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        hidden = linen.Dense(HIDDEN, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT)
        return linen.Dense(CLASSES, kernel_init=KERNEL_INIT)(jax.nn.relu(hidden(x)))


@nnx.jit
def nnx_train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: xent(m(x), y))(model)
    optimizer.update(model, grads)
    return loss


@pytest.mark.parametrize("multi_tensor", [False, True])
def test_nnx_optimizer_with_mxjax_adam_decreases_loss(multi_tensor):
    """Per leaf, and with ``multi_tensor=True``'s flat state kept by ``nnx.Optimizer``
    between ``nnx.jit`` calls."""
    x, y = blobs()
    model = NnxMLP(nnx.Rngs(0))
    opt = mx.optimizer.create(
        "adam", learning_rate=0.05, wd=1e-4, multi_tensor=multi_tensor
    )
    optimizer = nnx.Optimizer(model, to_optax(opt), wrt=nnx.Param)

    @nnx.jit
    def mxjax_first_update(model):
        params = nnx.state(model, nnx.Param)
        grads = nnx.grad(lambda m: xent(m(x), y))(model)
        return opt.update(grads, opt.init(params), params)[0]

    # The first step is exactly mxjax's own update (up to the increment's rounding).
    want = mxjax_first_update(model)

    losses = [float(nnx_train_step(model, optimizer, x, y))]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        nnx.state(model, nnx.Param),
        want,
    )
    losses += [float(nnx_train_step(model, optimizer, x, y)) for _ in range(29)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(optimizer.opt_state.count[...]) == 30  # mxjax's OptState.count
    flat = isinstance(optimizer.opt_state.slots, mx.optimizer.MultiSlots)
    assert flat == multi_tensor


def test_linen_jit_train_step_with_mxjax_sgd_decreases_loss():
    x, y = blobs()
    model = LinenMLP()
    params = model.init(jax.random.key(1), x)["params"]
    # lr_mult names leaves MXNet-style from the linen tree: freeze one bias.
    opt = mx.optimizer.create(
        "sgd", learning_rate=0.2, momentum=0.9, lr_mult={"Dense_0_bias": 0.0}
    )
    state = opt.init(params)

    @jax.jit
    def train_step(params, state):
        loss, grads = jax.value_and_grad(
            lambda p: xent(model.apply({"params": p}, x), y)
        )(params)
        params, state = opt.update(grads, state, params)
        return params, state, loss

    p, losses = params, []
    for _ in range(30):
        p, state, loss = train_step(p, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    np.testing.assert_array_equal(p["Dense_0"]["bias"], params["Dense_0"]["bias"])
    assert not np.allclose(p["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    assert not np.allclose(p["Dense_1"]["bias"], params["Dense_1"]["bias"])
