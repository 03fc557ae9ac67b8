"""The optimizer update alone: K steps in one jitted ``fori_loop`` (run by hand).

JAX pays a few microseconds per array passed to or returned from a jitted call; with
2,000 parameter tensors that dispatch is most of a standalone step. Running K steps
inside one call pays it once, so the time per step is the update's own cost::

    python benchmarks/in_graph.py                  # Adam, multi_tensor=True, W1 and W3
    python benchmarks/in_graph.py --optimizer lamb --per-leaf
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import mxjax as mx

WORKLOADS = {"W1": [(25_600_000,)], "W3": [(1000,)] * 2000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--per-leaf", action="store_true", help="multi_tensor=False")
    args = ap.parse_args()
    print("| workload | ms/step | ns/param | copies in the compiled loop |\n|---|---|---|---|")
    for wl, shapes in WORKLOADS.items():
        p = {f"p{i:04d}": jnp.full(s, 0.1) for i, s in enumerate(shapes)}
        g = jax.tree.map(lambda x: x * 0.01, p)
        opt = mx.optimizer.create(args.optimizer, multi_tensor=not args.per_leaf)
        state = opt.init(p)

        def k_steps(p, s, g):
            body = lambda i, c: opt.update(g, c[1], c[0])  # noqa: E731
            return jax.lax.fori_loop(0, args.steps, body, (p, s))

        compiled = jax.jit(k_steps, donate_argnums=(0, 1)).lower(p, state, g).compile()
        copies = compiled.as_text().count(" copy(")
        p, state = compiled(p, state, g)
        jax.block_until_ready(p)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            p, state = compiled(p, state, g)
            jax.block_until_ready(p)
            times.append((time.perf_counter() - t) / args.steps)
        n = sum(int(np.prod(s)) for s in shapes)
        best = min(times)
        print(f"| {wl} | {best * 1e3:.2f} | {best / n * 1e9:.2f} | {copies} |")


if __name__ == "__main__":
    main()
