"""Unseen configurations against a transcription of MXNet's stateful algorithm.

``mxnet_lr_oracle`` is checked against the recordings first, then hypothesis draws
configurations and non-decreasing call sequences and compares this package's pure
functions with the oracle's stateful outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mxnet_lr_oracle as oracle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lr_cases import RTOL, all_cases, case_id, load

from mxjax import lr_scheduler

# float32 cannot hold MXNet's float64 values below its normal range (stop_factor_lr=0
# with many decays); those compare absolutely. MXNet's own ``final + (orig - final) *
# p`` is only exact to ~1e-16 * max(orig, final) (it gives 0.0 for 4.8e-23 when
# final_lr=1), hence the absolute term scaled by the lrs involved.
F32_TINY = float(np.finfo(np.float32).tiny)
MXNET_ABS = 1e-12
CALLS = 64  # every drawn call sequence has this length (one compiled shape per op)


@pytest.mark.parametrize("case", all_cases() + load("overwrite"), ids=case_id)
def test_oracle_reproduces_the_recordings_exactly(case):
    for run in case["runs"]:
        base_lr = case.get("base_lr_after")
        got = oracle.run(case["cls"], case["kwargs"], run["n"], base_lr)
        assert got == run["lr"]  # float64 equality, Q36 included


lrs = st.just(0.0) | st.floats(1e-6, 1.0)  # not float32-subnormal lrs
factors = st.one_of(st.sampled_from([1.0, 0.5, 0.1, 0.9, 0.999]), st.floats(0.02, 1.0))


@st.composite
def warmups(draw, base_lr, max_steps=30):
    steps = draw(st.integers(0, max_steps))
    begin = base_lr * draw(st.sampled_from([0.0, 1.0]) | st.floats(1e-3, 1.0))
    mode = draw(st.sampled_from(["linear", "constant"]))
    return {"warmup_steps": steps, "warmup_begin_lr": begin, "warmup_mode": mode}


@st.composite
def factor_configs(draw):
    base = draw(lrs)
    # stop_factor_lr must survive float32 (0, or a normal float32: issue 19)
    stop = draw(st.sampled_from([1e-8, 0.0]) | st.floats(F32_TINY, 0.05))
    kwargs = {"step": draw(st.integers(1, 20)), "factor": draw(factors),
              "stop_factor_lr": stop, "base_lr": base}
    return "FactorScheduler", {**kwargs, **draw(warmups(base))}


@st.composite
def multifactor_configs(draw):
    base = draw(lrs)
    steps = sorted(draw(st.sets(st.integers(1, 120), min_size=1, max_size=6)))
    kwargs = {"step": steps, "factor": draw(factors), "base_lr": base}
    return "MultiFactorScheduler", {**kwargs, **draw(warmups(base))}


@st.composite
def poly_configs(draw):
    base = draw(lrs)
    warm = draw(warmups(base))
    kwargs = {
        "max_update": warm["warmup_steps"] + draw(st.integers(1, 150)),
        "base_lr": base,
        "pwr": draw(st.sampled_from([1, 2, 0.5, 3]) | st.floats(0.1, 5.0)),
        "final_lr": draw(st.sampled_from([0.0]) | lrs),
    }
    return "PolyScheduler", {**kwargs, **warm}


@st.composite
def cosine_configs(draw):
    base = draw(lrs)
    warm = draw(warmups(base))
    kwargs = {
        "max_update": warm["warmup_steps"] + draw(st.integers(1, 150)),
        "base_lr": base,
        "final_lr": draw(st.sampled_from([0.0]) | lrs),
    }
    return "CosineScheduler", {**kwargs, **warm}


@st.composite
def call_sequences(draw, kwargs):
    """``CALLS`` non-decreasing calls; for Poly/Cosine one of them is ``max_update``
    (the documented assumption, [Q36])."""
    top = kwargs.get("max_update", 0) + 40 if "max_update" in kwargs else 400
    ns = draw(st.lists(st.integers(0, top), min_size=CALLS, max_size=CALLS))
    if "max_update" in kwargs:
        ns[0] = kwargs["max_update"]
    return sorted(ns)


def _check(cls_name, kwargs, ns, base_lr=None):
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    if base_lr is not None:
        sched = sched.with_base_lr(base_lr)
    got = np.asarray(jax.vmap(sched)(jnp.asarray(ns, jnp.int32)), np.float64)
    want = np.asarray(oracle.run(cls_name, kwargs, ns, base_lr))
    scale = max(kwargs.get("base_lr", 0.01), kwargs.get("final_lr", 0), base_lr or 0)
    atol = max(F32_TINY, MXNET_ABS * scale)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol)


CONFIGS = {
    "factor": factor_configs(),
    "multifactor": multifactor_configs(),
    "poly": poly_configs(),
    "cosine": cosine_configs(),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_matches_mxnet_oracle_on_unseen_configs(kind, data):
    cls_name, kwargs = data.draw(CONFIGS[kind])
    _check(cls_name, kwargs, list(range(1, CALLS + 1)))  # what an optimizer calls
    _check(cls_name, kwargs, data.draw(call_sequences(kwargs)))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_with_base_lr_matches_mxnet_oracle_overwrite(kind, data):
    """``with_base_lr`` equals MXNet's scheduler after an optimizer overwrote its
    base_lr."""
    cls_name, kwargs = data.draw(CONFIGS[kind])
    new_lr = data.draw(lrs)
    _check(cls_name, kwargs, data.draw(call_sequences(kwargs)), base_lr=new_lr)


@settings(max_examples=40, deadline=None)
@given(
    factor=factors,
    base=st.floats(1e-3, 1.0),
    k0=st.integers(0, 5000),
)
def test_factor_decay_is_accurate_for_long_runs(factor, base, k0):
    """Many decays (k up to ~5000) without the clamp: float32 within RTOL of MXNet's
    float64 repeated product (where that is a normal float32)."""
    step = 3
    ns = [step * (k0 + i) + 1 for i in range(CALLS)]
    kwargs = {"step": step, "factor": factor, "base_lr": base, "stop_factor_lr": 0.0}
    _check("FactorScheduler", kwargs, ns)
