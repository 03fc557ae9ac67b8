"""Schedule adapters: MXNet's ``num_update`` starts at 1, optax's ``count`` at 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax.adapters import from_optax_schedule, to_optax_schedule

STEP, FACTOR, BASE = 3, 0.5, 1.0


def mx_factor(num_update):
    """MXNet's ``FactorScheduler(step=3, factor=0.5, base_lr=1)``, as its code behaves:
    the rate first drops on update ``step + 1`` (``ceil(n / step) - 1`` decays)."""
    n = jnp.asarray(num_update, jnp.float32)
    return BASE * FACTOR ** jnp.maximum(jnp.ceil(n / STEP) - 1, 0)


# MXNet's rates for updates 1..10, written out: the hand-made function must match them.
MX_FACTOR_RATES = [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]

OPTAX_SCHEDULES = {
    "piecewise": lambda: optax.piecewise_constant_schedule(1.0, {2: 0.1, 5: 0.5}),
    "exponential": lambda: optax.exponential_decay(1.0, 2, 0.5, staircase=True),
    "exp_smooth": lambda: optax.exponential_decay(0.3, 3, 0.7, transition_begin=2),
}


def test_mx_factor_fixture_is_mxnet_factor_scheduler():
    assert [float(mx_factor(n)) for n in range(1, 11)] == MX_FACTOR_RATES


def test_to_optax_schedule_shifts_count_by_one_at_first_and_boundary_steps():
    f = to_optax_schedule(mx_factor)
    # count 0 is MXNet's first update; count STEP is the first decayed update.
    assert float(f(0)) == 1.0
    assert float(f(STEP - 1)) == 1.0
    assert float(f(STEP)) == FACTOR
    assert float(f(2 * STEP)) == FACTOR**2
    got = [float(f(c)) for c in range(10)]
    assert got == MX_FACTOR_RATES


@pytest.mark.parametrize("name", sorted(OPTAX_SCHEDULES))
def test_from_optax_schedule_shifts_num_update_by_one(name):
    f = OPTAX_SCHEDULES[name]()
    s = from_optax_schedule(f)
    for n in range(1, 13):
        assert float(s(n)) == float(f(n - 1)), n
    if name == "piecewise":  # first update and both boundaries, written out
        assert [float(s(n)) for n in (1, 2, 3, 5, 6)] == pytest.approx(
            [1.0, 1.0, 0.1, 0.1, 0.05], rel=1e-6
        )


@pytest.mark.parametrize("name", sorted(OPTAX_SCHEDULES))
def test_from_optax_schedule_is_jit_and_vmap_safe(name):
    s = from_optax_schedule(OPTAX_SCHEDULES[name]())
    n = jnp.arange(1, 13)
    want = np.array([float(s(int(i))) for i in n], np.float32)
    # XLA's fused pow may differ from the eager one by an ulp
    np.testing.assert_allclose(jax.jit(jax.vmap(s))(n), want, rtol=1e-6)


def test_schedules_round_trip_both_ways():
    f = OPTAX_SCHEDULES["piecewise"]()
    assert to_optax_schedule(from_optax_schedule(f)) is f
    s = from_optax_schedule(to_optax_schedule(mx_factor))
    assert [float(s(n)) for n in range(1, 11)] == MX_FACTOR_RATES


def increments(step, steps=10):
    """Per-update increments of a unit-gradient SGD run: minus the rates used."""
    w, out = jnp.zeros(()), []
    state = None
    for _ in range(steps):
        new, state = step(w, state)
        out.append(float(w - new))
        w = new
    return out


def test_optax_sgd_with_to_optax_schedule_uses_mxnet_rates():
    tx = optax.sgd(to_optax_schedule(mx_factor))

    def step(w, state):
        state = tx.init(w) if state is None else state
        u, state = tx.update(jnp.ones(()), state, w)
        return optax.apply_updates(w, u), state

    assert increments(step) == pytest.approx(MX_FACTOR_RATES, rel=1e-6)


@pytest.mark.parametrize("via", ["learning_rate", "lr_scheduler"])
def test_mxjax_sgd_with_from_optax_schedule_uses_optax_rates(via):
    f = OPTAX_SCHEDULES["piecewise"]()
    opt = mx.optimizer.create("sgd", **{via: from_optax_schedule(f)})

    def step(w, state):
        state = opt.init(w) if state is None else state
        return opt.update(jnp.ones(()), state, w)

    want = [float(f(c)) for c in range(10)]
    assert increments(step) == pytest.approx(want, rel=1e-6)


def test_from_optax_schedule_repr_has_no_address():
    s = from_optax_schedule(OPTAX_SCHEDULES["exponential"]())
    assert repr(s).startswith("from_optax_schedule(<function ")
    assert " at 0x" not in repr(s)


def test_schedule_adapters_refuse_non_callables():
    with pytest.raises(TypeError, match="callable"):
        from_optax_schedule(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        to_optax_schedule(0.1)  # type: ignore[arg-type]
