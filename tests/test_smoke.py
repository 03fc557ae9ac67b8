import jax.numpy as jnp

import mxjax as mx


def test_create_is_case_insensitive():
    opt = mx.optimizer.create("SGD", learning_rate=0.5)
    p = {"w": jnp.ones(2)}
    new, _ = opt.update({"w": jnp.ones(2)}, opt.init(p), p)
    assert jnp.allclose(new["w"], 0.5)


def test_the_suites_compile_flags_are_set_only_where_xla_knows_them():
    """tests/conftest.py sets faster-compiling XLA flags unless XLA_FLAGS is set; an XLA
    that aborts on an unknown flag must get none."""
    import os

    from tests import conftest

    assert not conftest._supported("--xla_no_such_flag_for_mxjax=true")
    assert "XLA_FLAGS" in os.environ  # set for this session (possibly by the user)
