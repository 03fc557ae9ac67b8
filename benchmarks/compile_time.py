"""Compile time of one optimizer step: mxjax's default (per-leaf) path against optax.

Run by hand (not in CI)::

    python benchmarks/compile_time.py                          # every optimizer, W2 and W3
    python benchmarks/compile_time.py --only adam lamb --workloads W3 --repeats 1

For each (optimizer, workload) it builds the same jitted, donated step as
``benchmarks/step.py`` (mxjax through ``jit_update``, optax through ``jax.jit`` of
``update`` + ``apply_updates``), and times ``lower`` (tracing and lowering to StableHLO:
the Python side) and ``compile`` (XLA) separately, in fresh ``jax.jit`` objects, with
JAX's compilation cache off. The implementations are interleaved and each cell is the
median of ``--repeats`` runs. It also counts the instructions of the optimized HLO.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(__file__))
from step import BYTES, WORKLOADS, build, make_tree  # noqa: E402

IMPLS = ("mxjax", "optax")


def measure(impl: str, name: str, params, grads) -> tuple[float, float, int]:
    """(trace + lower s, XLA compile s, instructions in the optimized HLO)."""
    step, state, order, p, g = build(impl, name, params, grads)
    args = (g, state, p) if order == "update" else (p, state, g)
    t0 = time.perf_counter()
    lowered = step.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    ops = sum(1 for line in compiled.as_text().splitlines() if " = " in line)
    return t1 - t0, t2 - t1, ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(BYTES))
    ap.add_argument("--workloads", nargs="*", default=["W2", "W3"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    print(
        "| optimizer | workload | mxjax compile s (trace + XLA) | optax compile s "
        "(trace + XLA) | mxjax/optax | HLO instructions (mxjax / optax) |\n"
        "|---|---|---|---|---|---|",
        flush=True,
    )
    for wl in args.workloads:
        shapes = WORKLOADS[wl]()
        params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
        for name in args.only:
            runs: dict[str, list[tuple[float, float, int]]] = {i: [] for i in IMPLS}
            for _ in range(args.repeats):  # interleaved
                for impl in IMPLS:
                    runs[impl].append(measure(impl, name, params, grads))
            cells, totals = [], []
            for impl in IMPLS:
                total = statistics.median(t + c for t, c, _ in runs[impl])
                trace = statistics.median(t for t, _, _ in runs[impl])
                xla = statistics.median(c for _, c, _ in runs[impl])
                totals.append(total)
                cells.append(f"{total:.2f} ({trace:.2f} + {xla:.2f})")
            ops = " / ".join(str(runs[i][0][2]) for i in IMPLS)
            print(
                f"| {name} | {wl} | {cells[0]} | {cells[1]} | "
                f"{totals[0] / totals[1]:.2f} | {ops} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
