"""FTML: hand-checked first step and argument validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx


def test_ftml_first_step_by_hand():
    lr, b1, b2, eps, wd = 0.1, 0.6, 0.999, 1e-8, 0.1
    w, g = 0.5, 2.0
    opt = mx.optimizer.ftml(learning_rate=lr, wd=wd, clip_gradient=1.5)
    new, state = opt.update(jnp.array([g]), opt.init(jnp.array([w])), jnp.array([w]))
    gh = min(g + wd * w, 1.5)  # wd inside the clip
    v = (1 - b2) * gh**2
    d = (1 - b1) / lr * (np.sqrt(v / (1 - np.float32(b2))) + eps)  # eps outside sqrt
    z = (1 - b1) * gh - d * w
    np.testing.assert_allclose(new, [-z / d], rtol=1e-5)
    np.testing.assert_allclose(state.slots["d"], [d], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(beta1=1.0), "beta1"),
        (dict(beta2=-0.5), "beta2"),
        (dict(epsilon=0.0), r"epsilon must be real in \(0, inf\), got 0.0"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_ftml_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mx.optimizer.ftml(**kwargs)
