"""Under ``jit`` with XLA's default flags, products round before they are summed.

The suite compiles with fast-compiling flags (tests/conftest.py) under which XLA's CPU
backend never contracts a product into an FMA; users compile with the defaults, where it
does. These tests run the checks in subprocesses under the defaults (``XLA_FLAGS=""``)
and under the suite's flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import FAST_COMPILE
from tests.helpers import ROOT


def under(flags: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": flags}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check(flags: str, what: str):
    out = under(flags, "-m", "tests.optimizer.default_flags_check", what).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fast_flags_supported() -> bool:
    return os.environ.get("XLA_FLAGS") == FAST_COMPILE


def test_the_default_flags_contract_and_the_suites_do_not(fast_flags_supported) -> None:
    """The premise: the defaults fuse an unguarded ``a * b + c``, the suite's flags do not
    (so comparing the two finds every contraction the guards miss)."""
    assert check("", "contracts")
    if fast_flags_supported:
        assert not check(FAST_COMPILE, "contracts")


def test_guarded_products_round_as_numpy_under_default_flags() -> None:
    assert check("", "guards") == []


# Updates whose bits also depend on which of XLA's two CPU emitters compiles them (the
# default flags use the fusion emitter, the suite's the legacy one): their square roots
# and random draws are computed by each emitter's own code for rsqrt/log (1 ulp). The
# products are the same: without the guards, 28 of the 42 cases differ.
EMITTER_MATH = {
    "adadelta": "a / sqrt(b), compiled as a * rsqrt(b)",
    "adagrad": "a / sqrt(b), compiled as a * rsqrt(b)",
    "ftrl": "a / sqrt(b), compiled as a * rsqrt(b)",
    "groupadagrad": "a / sqrt(b), compiled as a * rsqrt(b)",
    "rmsprop": "a / sqrt(b), compiled as a * rsqrt(b)",
    "sgld": "its Gaussian noise (log, sqrt)",
}


@pytest.mark.parametrize("layout", ["per-leaf", "flat XLA"])
def test_every_jitted_update_is_the_same_under_default_and_suite_flags(
    tmp_path, fast_flags_supported, monkeypatch, layout
) -> None:
    """Every optimizer, two configurations, three jitted steps: the same bits whether or
    not LLVM may contract (but for the emitters' own rsqrt and log, EMITTER_MATH). Per
    leaf, and with ``multi_tensor=True`` through XLA (no CPU kernel: the flat layout's
    path on other backends)."""
    if not fast_flags_supported:
        pytest.skip("this XLA does not take the suite's flags: nothing to compare with")
    flat = []
    if layout == "flat XLA":
        monkeypatch.setenv("MXJAX_NO_KERNELS", "1")
        flat = ["flat"]
    runs = {}
    for label, flags in (("default", ""), ("suite", FAST_COMPILE)):
        path = tmp_path / f"{label}.npz"
        under(flags, "-m", "tests.optimizer.default_flags_check", "steps", str(path), *flat)
        runs[label] = np.load(path)
    default, suite = runs["default"], runs["suite"]
    assert sorted(default.files) == sorted(suite.files) and default.files
    differ = {
        k.split("#")[0]
        for k in default.files
        if not np.array_equal(default[k], suite[k], equal_nan=True)
    }
    assert differ <= set(EMITTER_MATH), sorted(differ - set(EMITTER_MATH))


def test_representative_mxnet_parity_cases_pass_under_default_flags() -> None:
    """The recorded MXNet cases marked representative, jitted as users jit them."""
    proc = under(
        "", "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m",
        "representative", "tests/optimizer/test_parity_mxnet.py",
    )
    assert " passed" in proc.stdout
