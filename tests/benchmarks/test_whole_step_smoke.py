"""``benchmarks/whole_step.py``'s six paths train the same tiny model the same way.

The benchmark's own sanity check, on its quick deep MLP: from one initial model, the
loss falls on every path and after three Adam steps the mxjax paths (per leaf,
``multi_tensor=True``, packed; functional and through ``to_optax`` in
``flax.nnx.Optimizer``) agree to 1e-4 relative, and with optax to 1e-2.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "whole_step.py"


@pytest.fixture(scope="module")
def whole_step():
    spec = importlib.util.spec_from_file_location("whole_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["whole_step"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["whole_step"]


def test_every_path_takes_the_same_steps(whole_step):
    model, batch, _ = whole_step.make_model("mlp", quick=True, resnet_width=0)
    losses = {
        impl: whole_step.Case(impl, model, batch).sanity_losses()
        for impl in whole_step.IMPLS
    }
    whole_step.check_losses(losses, "mlp")
    assert len(losses) == 6


def test_a_path_that_differs_is_caught(whole_step):
    losses = {"optax": (3.0, 2.9), "mxjax": (3.0, 2.9), "mxjax-mt": (3.0, 2.901)}
    with pytest.raises(SystemExit, match="mxjax-mt"):
        whole_step.check_losses(losses, "mlp")
    with pytest.raises(SystemExit, match="mxjax"):  # no progress
        whole_step.check_losses({"optax": (3.0, 2.9), "mxjax": (3.0, 3.0)}, "mlp")
