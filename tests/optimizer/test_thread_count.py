"""Per-leaf norms (LAMB, LANS, LARS) give the same bits on 1 core and on 2.

Each child process pins itself to N cores before JAX starts (XLA sizes its thread pool
from the process's CPU affinity), runs two jitted steps and saves the new parameters:
under XLA's default flags (where large sums went to YNNPACK, split by thread count) and
under the suite's fast-compile flags (where the -O0 code contracted LAMB's and LANS's
last product into an FMA on some threads only).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

CHILD = r"""
import os, sys
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[1])]))
import jax, jax.numpy as jnp, numpy as np
import mxjax as mx

# Leaf sizes around and above 4096 (XLA hands larger sums to YNNPACK), odd sizes included.
shapes = [(300, 700), (100_000,), (64, 64, 3, 3), (1, 65_537)]
rng = np.random.default_rng(0)
params = {f"p{i}_weight": jnp.asarray(rng.standard_normal(s), jnp.float32)
          for i, s in enumerate(shapes)}
grads = {k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32) * 0.1
         for k, v in params.items()}
out = {}
for name in ("lamb", "lans", "lars"):
    opt = mx.optimizer.create(name, wd=0.01)
    step = jax.jit(opt.update)
    p, s = params, opt.init(params)
    for _ in range(2):
        p, s = step(grads, s, p)
    out.update({f"{name}/{k}": np.asarray(v) for k, v in p.items()})
np.savez(sys.argv[2], **out)
"""


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores to compare thread counts"
)
@pytest.mark.parametrize("flags", ["default", "suite"])
def test_per_leaf_norms_do_not_depend_on_the_thread_count(tmp_path, flags: str) -> None:
    if flags == "suite" and not os.environ.get("XLA_FLAGS"):
        pytest.skip("the suite runs under XLA's default flags (XLA_FLAGS is empty)")
    env = {**os.environ}
    if flags == "default":
        env["XLA_FLAGS"] = ""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    results = []
    for cores in (1, 2):
        path = tmp_path / f"cores{cores}.npz"
        subprocess.run(
            [sys.executable, "-c", CHILD, str(cores), str(path)],
            env=env,
            check=True,
            timeout=600,
        )
        results.append(np.load(path))
    one, two = results
    assert sorted(one.files) == sorted(two.files)
    differ = [k for k in one.files if not np.array_equal(one[k], two[k])]
    assert not differ, f"1 and 2 cores gave different bits for {differ}"


@pytest.mark.parametrize("name", ["lamb", "lans", "lars"])
def test_large_leaf_norms_are_differentiable(name: str, monkeypatch) -> None:
    """The ordered sum of a leaf above SMALL elements has a derivative (JAX has none for
    a reduction with a custom reducer): ``jax.grad`` through an update gives what it
    gives with a plain ``jnp.sum`` in its place."""
    import jax
    import jax.numpy as jnp

    import mxjax as mx
    from mxjax.optimizer import _trust

    w = jnp.sin(jnp.arange(64 * 64, dtype=jnp.float32)).reshape(64, 64)
    opt = mx.optimizer.create(name, learning_rate=0.01, wd=0.01)
    state = opt.init({"fc_weight": w})

    def f(w):
        g = {"fc_weight": jnp.cos(w) * 0.1}
        return jnp.sum(opt.update(g, state, {"fc_weight": w})[0]["fc_weight"] ** 2)

    got = jax.jit(jax.grad(f))(w)
    monkeypatch.setattr(_trust, "_ordered_sum", jnp.sum)
    want = jax.jit(jax.grad(f))(w)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
