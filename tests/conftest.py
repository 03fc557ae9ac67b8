"""Session-wide test settings."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

# The tests check numbers, not speed (benchmarks/ measures speed): XLA's CPU compiler
# with its legacy loop emitter and without LLVM optimization compiles the suite's
# thousands of small jitted steps ~2.5x faster, computing the same IEEE float32
# operations. Set XLA_FLAGS yourself (even to "") to run the suite under XLA's defaults;
# an XLA that does not know these flags (it aborts on unknown ones) runs with its own.
# Set before JAX starts its backend, so inherited by xdist workers and subprocesses.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def _supported(flags: str) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices('cpu')"],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        timeout=300,
    )
    return probe.returncode == 0


if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = FAST_COMPILE if _supported(FAST_COMPILE) else ""

# The compiled loops' disk cache: one private folder for the session (xdist workers and
# subprocesses inherit it), removed at the end; never the user's ~/.cache/mxjax.
if "MXJAX_TEST_CACHE_DIR" not in os.environ:
    os.environ["MXJAX_TEST_CACHE_DIR"] = tempfile.mkdtemp(prefix="mxjax-tests-")
    atexit.register(shutil.rmtree, os.environ["MXJAX_TEST_CACHE_DIR"], True)
os.environ["MXJAX_CACHE_DIR"] = os.environ["MXJAX_TEST_CACHE_DIR"]

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
