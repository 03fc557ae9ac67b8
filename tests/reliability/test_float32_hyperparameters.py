"""Hyperparameters that pass a float64 range check but break float32 are refused at
construction, naming the value and float32 (issue 19, item 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import mxjax as mx
from mxjax import initializer as I
from mxjax import lr_scheduler as L

O = mx.optimizer
CASES = [
    # rounds to 0 (or to a subnormal the CPU flushes): 0/0 on a zero gradient
    (lambda: O.adam(epsilon=1e-39), "epsilon", "1e-39"),
    (lambda: O.adagrad(eps=1e-40), "eps", "1e-40"),
    (lambda: O.rmsprop(epsilon=1e-45), "epsilon", "1e-45"),
    (lambda: O.adabelief(epsilon=5e-39), "epsilon", "5e-39"),
    (lambda: O.ftrl(learning_rate=1e-50), "learning_rate", "1e-50"),
    (lambda: O.ftml(learning_rate=1e-39), "learning_rate", "1e-39"),
    (lambda: O.sgd(wd=1e-40), "wd", "1e-40"),
    # rounds to 1.0 where the rule is [0, 1)
    (lambda: O.ftml(beta1=0.9999999999), "beta1", "0.9999999999"),
    (lambda: O.adam(beta2=0.99999999999), "beta2", "0.99999999999"),
    (lambda: O.sgd(momentum=0.999999999), "momentum", "0.999999999"),
    (lambda: O.rmsprop(gamma1=1 - 1e-12), "gamma1", repr(1 - 1e-12)),
    # overflows float32: -inf weights
    (lambda: O.sgd(learning_rate=1e39), "learning_rate", "1e+39"),
    (lambda: O.adam(rescale_grad=1e39), "rescale_grad", "1e+39"),
    (lambda: O.sgd(lr_mult={"w": 1e39}), "lr_mult", "1e+39"),
    (lambda: O.sgd(learning_rate=1e20, lr_mult={"w": 1e20}), "learning_rate * lr_mult", "1e+40"),
    (lambda: O.sgd(wd=1e30, wd_mult={"w": 1e10}), "wd * wd_mult", "1e+40"),
    (lambda: O.sgd(clip_gradient=-1e39), "clip_gradient", "-1e+39"),
    (lambda: L.FactorScheduler(step=2, base_lr=1e39), "base_lr", "1e+39"),
    (lambda: L.PolyScheduler(max_update=5, final_lr=1e-40), "final_lr", "1e-40"),
    # inf weights
    (lambda: I.Uniform(scale=3e38), "scale", "3e+38"),
    (lambda: I.Uniform(scale=2e38), "scale", "2e+38"),
    (lambda: I.Normal(sigma=3e38), "sigma", "3e+38"),
    (lambda: I.Normal(sigma=1e38), "sigma", "1e+38"),
    (lambda: I.Constant(1e39), "value", "1e+39"),
    (lambda: I.Constant([1.0, 1e-40]), "value", "1e-40"),
    (lambda: I.Xavier(magnitude=1e-40), "magnitude", "1e-40"),
]


@pytest.mark.parametrize("build,arg,shown", CASES, ids=[c[1] + "=" + c[2] for c in CASES])
def test_float32_breaking_hyperparameter_is_refused(build, arg, shown):
    with pytest.raises(ValueError, match="float32") as e:
        build()
    assert arg in str(e.value) and shown in str(e.value), e.value


def test_values_float32_holds_are_accepted():
    O.adam(epsilon=1.2e-38, beta1=0.99999, learning_rate=3e38)
    O.ftrl(learning_rate=1e-30)
    O.sgd(learning_rate=1e19, lr_mult={"w": 1e19}, wd=0.0, wd_mult={"w": 1e38})
    I.Uniform(scale=1.7e38)
    I.Normal(sigma=4e37)
    I.Constant([0.0, 1e-30, 3e38])


@pytest.mark.parametrize(
    "init,dtype",
    [
        (I.Uniform(scale=4e4), jnp.float16),  # the span 2 * scale overflows float16
        (I.Normal(sigma=1e4), jnp.float16),
        (I.Constant(7e4), jnp.float16),
        (I.Constant(3.395e38), jnp.bfloat16),  # above bfloat16 max 3.3895e38
    ],
)
def test_an_initializer_refuses_a_dtype_its_values_overflow(init, dtype):
    with pytest.raises(ValueError, match=r"fc_weight in (float16|bfloat16)"):
        I.init_params(init, jax.random.key(0), {"fc": {"weight": (2, 3)}}, dtype=dtype)
    out = I.init_params(init, jax.random.key(0), {"fc": {"weight": (2, 3)}})
    assert bool(jnp.all(jnp.isfinite(out["fc"]["weight"])))  # float32 holds them
