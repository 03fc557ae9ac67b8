"""The jitted step under ``jax.sharding`` on a mesh of 8 simulated host devices."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

import mxjax as mx


def test_sharded_step_keeps_shardings_and_equals_unsharded():
    names = [n for n in mx.optimizer.names() if n != "groupadagrad"]  # 2-D weights only
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
