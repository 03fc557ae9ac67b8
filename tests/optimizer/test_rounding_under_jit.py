"""Under ``jit`` with XLA's default flags, updates round as MXNet's do.

The suite compiles with fast-compiling flags (tests/conftest.py) under which XLA's CPU
backend never contracts a product into an FMA; users compile with the defaults, where it
does. These tests run in a subprocess under the defaults (``XLA_FLAGS=""``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def default_flags(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def checks() -> dict:
    proc = default_flags("-m", "tests.optimizer.default_flags_check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_xla_contracts_unguarded_products_under_default_flags(checks: dict) -> None:
    """The premise: without the guards the default flags do fuse (else nothing below
    would be tested)."""
    assert checks["contracts"]


def test_guards_round_every_product_quotient_and_root_as_numpy(checks: dict) -> None:
    assert checks["guards"] == []


def test_every_jitted_update_equals_its_op_by_op_evaluation_bitwise(checks: dict) -> None:
    assert checks["jit_equals_eager"] == []


def test_representative_mxnet_parity_cases_pass_under_default_flags() -> None:
    """The recorded MXNet cases marked representative, jitted as users jit them."""
    proc = default_flags(
        "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m",
        "representative", "tests/optimizer/test_parity_mxnet.py",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
