"""Where ``multi_tensor="auto"`` switches layouts: per-leaf against flat, by leaf count.

Run by hand (not in CI), on a quiet machine::

    python benchmarks/layout_crossover.py
    python benchmarks/layout_crossover.py --only adam --counts 8 32 128 --size 4096

For trees of ``n`` float32 leaves of ``--size`` elements (Adam by default), it measures
``mx.optimizer.jit_update``'s step with ``multi_tensor=False`` (per leaf) and
``multi_tensor=True`` (flat: on the CPU, mxjax's custom call): compile time (trace, lower
and XLA compile of a fresh jit; JAX's compilation cache off) and step time (median of
interleaved rounds, disturbed rounds dropped as in ``step.py``). Prints a Markdown table;
``AUTO_MIN_LEAVES`` (``mxjax/optimizer/_choose.py``) was chosen from it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

import mxjax as mx

sys.path.insert(0, os.path.dirname(__file__))
from step import machine, summarize  # noqa: E402


def case(name: str, multi_tensor: bool, n: int, size: int) -> tuple[float, callable]:
    """(compile seconds, a function running ``steps`` steps and returning seconds/step)."""
    keys = jax.random.split(jax.random.key(n), 2)
    params = {f"w{i:04d}": jax.random.normal(keys[0], (size,)) * 0.1 for i in range(n)}
    grads = {k: jax.random.normal(keys[1], (size,)) * 0.1 for k in params}
    opt = mx.optimizer.create(name, multi_tensor=multi_tensor)
    state = opt.init(params)
    step = mx.optimizer.jit_update(opt)
    t = time.perf_counter()
    compiled = step.lower(grads, state, params).compile()
    compile_s = time.perf_counter() - t
    carry = [jax.tree.map(jnp.copy, params), state]

    def run(steps: int) -> float:
        p, s = carry
        p, s = compiled(p, s, grads)  # donated: params, state first
        jax.block_until_ready(p)
        t = time.perf_counter()
        for _ in range(steps):
            p, s = compiled(p, s, grads)
        jax.block_until_ready((p, s))
        carry[:] = [p, s]
        return (time.perf_counter() - t) / steps

    return compile_s, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=["adam", "sgd", "lamb"])
    ap.add_argument("--counts", nargs="*", type=int, default=[4, 8, 16, 32, 64, 128])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    print(f"Machine: {machine()}; leaves of {args.size} float32; {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(
        "| optimizer | leaves | per-leaf compile s | flat compile s | per-leaf step µs "
        "| flat step µs | flat/per-leaf step |\n|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in args.only:
        for n in args.counts:
            cases = {mt: case(name, mt, n, args.size) for mt in (False, True)}
            steps = max(5, 2_000_000 // (n * args.size))
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):  # interleaved
                for mt, (_, run) in cases.items():
                    times[mt].append(run(steps))
            (pl, _, _), (fl, _, _) = summarize(times[False]), summarize(times[True])
            print(
                f"| {name} | {n} | {cases[False][0]:.2f} | {cases[True][0]:.2f} "
                f"| {pl * 1e6:.0f} | {fl * 1e6:.0f} | {fl / pl:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
