"""Save after K updates, load in a fresh process, train to N: bit-identical to N updates
straight. Plus a bit-exact round trip of every registered optimizer's state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ckpt_cases import CASES, make, train

import mxjax as mx
from mxjax import checkpoint
from tests.helpers import assert_bit_identical, bits

K, N = 4, 9
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Per case: (straight N-step result, resumed result, fresh-state control)."""
    tmp = tmp_path_factory.mktemp("resume")
    straight, control = {}, {}
    for case in CASES:
        opt, params, step = make(case)
        straight[case] = train(step, params, opt.init(params), 0, N)
        mid_params, mid_state = train(step, params, opt.init(params), 0, K)
        checkpoint.save(tmp / f"{case}.npz", mid_state, mid_params, optimizer=opt)
        control[case] = train(step, mid_params, opt.init(params), K, N)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
    }
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("ckpt_cases.py")),
            str(tmp),
            str(K),
            str(N),
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    out = {}
    for case in CASES:
        opt, params, _ = make(case)
        ckpt = checkpoint.load(
            tmp / f"{case}.out.npz", optimizer=opt, like_params=params
        )
        out[case] = (ckpt.params, ckpt.state)
    return straight, out, control


@pytest.mark.parametrize("case", list(CASES))
def test_resume_in_fresh_process_is_bit_identical(resumed, case):
    straight, out, control = resumed
    assert int(out[case][1].count) == N
    assert_bit_identical(out[case], straight[case])


@pytest.mark.parametrize("case", list(CASES))
def test_resume_without_the_state_would_differ(resumed, case):
    """Control: the comparison above detects a lost state."""
    straight, _, control = resumed
    differ = [
        not np.array_equal(bits(a), bits(b))
        for a, b in zip(
            jax.tree.leaves(control[case][0]),
            jax.tree.leaves(straight[case][0]),
            strict=True,
        )
    ]
    assert any(differ)


def test_nadam_state_extra_is_saved():
    opt, params, step = make("nadam")
    _, state = train(step, params, opt.init(params), 0, 2)
    assert state.extra is not None and jnp.shape(state.extra) == ()


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_every_optimizer_state_round_trips_bit_exact(tmp_path, name):
    opt = mx.optimizer.create(name)
    # 2-D leaves, so that GroupAdaGrad (2-D weights only) is covered too.
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.arange(3.0)[None]}
    grads = jax.tree.map(lambda p: jnp.cos(3 * p) + 0.5, params)
    new_params, state = jax.jit(opt.update)(grads, opt.init(params), params)
    checkpoint.save(tmp_path / "s.npz", state, new_params, optimizer=opt)
    ckpt = checkpoint.load(tmp_path / "s.npz", optimizer=opt, like_params=params)
    assert_bit_identical(ckpt.state, state)
    assert_bit_identical(ckpt.params, new_params)
    assert type(ckpt.state) is type(state)
