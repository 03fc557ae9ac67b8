"""GroupAdaGrad: row-wise history and MXNet's restrictions, refused clearly."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_groupadagrad_keeps_one_history_value_per_row():
    lr, eps = 0.1, 1e-5
    opt = mx.optimizer.groupadagrad(learning_rate=lr, eps=eps)
    w = jnp.zeros((2, 3))
    g = jnp.array([[1.0, 2.0, 2.0], [0.0, 3.0, 0.0]])
    state = opt.init(w)
    hist = state.slots["history"]
    assert hist.shape == (2, 1) and hist.dtype == jnp.float32
    new, state = opt.update(g, state, w)
    h = np.array([[3.0], [3.0]])  # mean of squares per row
    np.testing.assert_allclose(state.slots["history"], h)
    np.testing.assert_allclose(new, -lr * np.asarray(g) / np.sqrt(h + eps), rtol=1e-6)


def test_groupadagrad_refuses_non_2d_weights():
    opt = mx.optimizer.groupadagrad()
    with pytest.raises(ValueError, match=r"only 2-D weights.*shape \(3, 4, 5\)"):
        opt.init({"w": jnp.zeros((3, 4, 5))})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(wd=0.1), r"wd must be real in \[0, 0\], got 0.1"),
        (dict(eps=0.0), r"eps must be real in \(0, inf\), got 0.0"),
    ],
)
def test_groupadagrad_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.groupadagrad(**kwargs)
