import jax.numpy as jnp

import mxjax as mx


def test_create_is_case_insensitive():
    opt = mx.optimizer.create("SGD", learning_rate=0.5)
    p = {"w": jnp.ones(2)}
    new, _ = opt.update({"w": jnp.ones(2)}, opt.init(p), p)
    assert jnp.allclose(new["w"], 0.5)
