"""Ctrl-C stops ``mxjax train`` at any time, says where, and exits 130 (issue 19,
item 14): a real process gets SIGINT while it compiles and while it trains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


@pytest.mark.parametrize(
    "when",
    ["initializer:", "         1 "],  # just before compiling (the first seconds); training
)
def test_sigint_stops_the_run_says_where_and_exits_130(tmp_path, when):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxjax", "train", "--epochs", "5000",
         "--max-steps", "40000", "--log-every", "1", "--out", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(when):
                break
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        out, err = proc.communicate(timeout=120)
        stopped_after = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "mxjax train: interrupted" in err and "Traceback" not in err, err
    assert "stopped in epoch" in err or "before training" in err, err
    assert "final:" not in out  # it did not train to the end
    assert stopped_after < 30
