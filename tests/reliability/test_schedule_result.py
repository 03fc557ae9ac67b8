"""A learning-rate callable's result is checked when jit traces, and a non-finite
rate is skipped under ``skip_nonfinite`` like a non-finite gradient (issue 19, item 6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx

BAD_RESULTS = [
    lambda n: jnp.full((1,), 0.1),  # would reshape a 0-d parameter
    lambda n: jnp.full((3,), 0.1),  # would become per-element rates
    lambda n: jnp.zeros((0,)),
    lambda n: jnp.asarray(0.1 + 0.2j),
    lambda n: n > 0,  # a bool array
    lambda n: True,
    lambda n: "0.1",
    lambda n: None,
]


@pytest.mark.parametrize("how", ["learning_rate", "lr_scheduler"])
@pytest.mark.parametrize("sched", BAD_RESULTS)
def test_a_schedule_must_return_a_real_scalar(how, sched):
    opt = mx.optimizer.sgd(**{how: sched}, **({"learning_rate": None} if how == "lr_scheduler" else {}))
    p = {"w": jnp.ones(()), "v": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"schedule's result must be a real scalar"):
        jax.jit(opt.update)(p, opt.init(p), p)


def test_a_python_float_or_int_schedule_is_fine():
    for sched in (lambda n: 0.1, lambda n: 1, lambda n: jnp.float16(0.1) * n):
        opt = mx.optimizer.sgd(learning_rate=sched)
        p = {"w": jnp.ones(())}
        new, _ = jax.jit(opt.update)(p, opt.init(p), p)
        assert new["w"].shape == ()


@pytest.mark.parametrize("name", ["adam", "lamb"])
@pytest.mark.parametrize("multi_tensor", [False, True])
@pytest.mark.parametrize("bad", [jnp.nan, -jnp.inf])
def test_a_nonfinite_rate_skips_the_step(name, multi_tensor, bad):
    sched = lambda n: jnp.where(n == 2, bad, 0.1)  # noqa: E731
    opt = mx.optimizer.create(
        name, learning_rate=sched, skip_nonfinite=True, multi_tensor=multi_tensor
    )
    p = {"w": jnp.ones((2, 3)), "b": jnp.full((3,), 0.5)}
    g = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), p)
    step = jax.jit(opt.update)
    s = opt.init(p)
    p1, s1 = step(g, s, p)
    p2, s2 = step(g, s1, p1)  # num_update 2: the rate is not finite
    assert int(s2.skipped) == 1
    for a, b in zip(jax.tree.leaves((p1, s1.slots)), jax.tree.leaves((p2, s2.slots))):
        np.testing.assert_array_equal(a, b)
    assert int(s2.count) == int(s1.count)
    # as for a gradient, the count stays: the same rate again, skipped again
    p3, s3 = step(g, s2, p2)
    assert int(s3.skipped) == 2
    assert all(bool(jnp.all(x == y)) for x, y in zip(jax.tree.leaves(p3), jax.tree.leaves(p1)))
