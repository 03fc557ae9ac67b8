"""The jitted step under ``jax.sharding`` on a mesh of 8 simulated host devices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

import mxjax as mx

NAMES = [n for n in mx.optimizer.names() if n != "groupadagrad"]  # 2-D weights only
PARTS = 3  # subprocesses the optimizers are split over (they run in parallel under xdist)


@pytest.mark.parametrize("part", range(PARTS))
def test_sharded_step_keeps_shardings_and_equals_unsharded(part: int):
    names = NAMES[part::PARTS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharding" / "sharded_step.py"), *names],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(line.split()[1] for line in proc.stdout.splitlines()) == sorted(names)


def test_the_parts_cover_every_optimizer():
    covered = sorted(n for part in range(PARTS) for n in NAMES[part::PARTS])
    assert covered == sorted(NAMES) and len(NAMES) > PARTS
