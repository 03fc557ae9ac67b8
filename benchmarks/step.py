"""Benchmark one optimizer step: mxjax against optax (and PyTorch when installed).

Run by hand (not in CI), on a quiet machine::

    python benchmarks/step.py                 # all optimizers and workloads
    python benchmarks/step.py --quick         # fewer rounds
    python benchmarks/step.py --only adam --workloads W2

Workloads (float32): W1 one tensor of 25.6M; W2 ResNet-50's 161 parameter tensors in
MXNet's (out, in, kh, kw) layout (25.6M in all); W3 2,000 tensors of 1,000.

When PyTorch is installed, its ``fused=True`` and ``foreach=True`` optimizers (where
PyTorch has them) run in the same rounds (``torch.optim``'s ``step()`` with the gradients
already in ``.grad``).

For each (optimizer, workload, implementation) it measures the jitted, donated step: the
median and spread of per-step times over interleaved rounds (rounds whose time is far
above the best are counted as disturbed and dropped), the bytes the update must move per
step divided by the median time (GB/s) and as a percentage of this machine's bandwidth
(a jitted, in-place ``a += s*b`` on 100M floats, measured in the same run), the compile time,
and the compiled step's temporary memory relative to params + grads + state. It prints a
Markdown table and writes it, with the machine described, to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import mxjax as mx

# Bytes moved per parameter per step (float32): reads + writes of params, grads, slots.
BYTES = {"sgd": 20, "adam": 28, "rmsprop": 20, "adagrad": 20, "lamb": 28, "nadam": 28}


def resnet50_shapes() -> list[tuple[int, ...]]:
    """The 161 parameter shapes of ResNet-50 (v1, bottleneck), MXNet layout."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            for cout, cin_, k in ((width, cin, 1), (width, width, 3), (4 * width, width, 1)):
                shapes += [(cout, cin_, k, k), (cout,), (cout,)]
            if b == 0:
                shapes += [(4 * width, cin, 1, 1), (4 * width,), (4 * width,)]
            cin = 4 * width
    return shapes + [(1000, 2048), (1000,)]


WORKLOADS = {
    "W1": lambda: [(25_600_000,)],
    "W2": resnet50_shapes,
    "W3": lambda: [(1000,)] * 2000,
}


def make_tree(shapes, seed):
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {f"p{i:04d}": jax.random.normal(k, s) * 0.1 for i, (k, s) in enumerate(zip(keys, shapes, strict=True))}


def mxjax_opt(name, multi_tensor=False):
    kw = {"sgd": dict(momentum=0.9, learning_rate=0.01)}.get(name, {})
    return mx.optimizer.create(name, multi_tensor=multi_tensor, **kw)


def optax_opt(name):
    return {
        "sgd": lambda: optax.sgd(0.01, momentum=0.9),
        "adam": lambda: optax.adam(1e-3),
        "rmsprop": lambda: optax.rmsprop(1e-3, decay=0.9, eps=1e-8),
        "adagrad": lambda: optax.adagrad(0.01),
        "lamb": lambda: optax.lamb(1e-3),
        "nadam": lambda: optax.nadam(1e-3),
    }[name]()


IMPLS = ("mxjax", "mxjax-mt", "mxjax-packed", "optax")
TORCH_IMPLS = ("torch-fused", "torch-foreach")
# PyTorch's optimizers with a fused CPU kernel; LAMB is not in torch.optim.
TORCH_FUSED = {"sgd", "adam", "adagrad"}


def torch_case(impl, name, workload):
    """A PyTorch optimizer on the workload, or None where PyTorch has no such variant."""
    try:
        import torch
    except ImportError:
        return None
    if name == "lamb" or (impl == "torch-fused" and name not in TORCH_FUSED):
        return None
    return TorchCase(torch, impl, name, workload)


class TorchCase:
    def __init__(self, torch, impl, name, workload):
        self.torch, self.compile_s, self.mem_ratio, self.times = torch, 0.0, 1.0, []
        shapes = WORKLOADS[workload]()
        self.params = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
        for p in self.params:
            p.grad = torch.randn(p.shape) * 0.1
        flag = {"fused": True} if impl == "torch-fused" else {"foreach": True}
        opt = {
            "sgd": lambda: torch.optim.SGD(self.params, lr=0.01, momentum=0.9, **flag),
            "adam": lambda: torch.optim.Adam(self.params, lr=1e-3, **flag),
            "rmsprop": lambda: torch.optim.RMSprop(self.params, lr=1e-3, **flag),
            "adagrad": lambda: torch.optim.Adagrad(self.params, lr=0.01, **flag),
            "nadam": lambda: torch.optim.NAdam(self.params, lr=1e-3, **flag),
        }[name]
        self.opt = opt()

    def run(self, steps):
        t = time.perf_counter()
        with self.torch.no_grad():
            for _ in range(steps):
                self.opt.step()
        self.times.append((time.perf_counter() - t) / steps)

    def summary(self):
        return Case.summary(self)


def build(impl, name, params, grads):
    """(jitted step, initial state, argument order, params, grads): mxjax-packed steps
    the params and grads packed by ``opt.pack``."""
    if impl.startswith("mxjax"):
        opt = mxjax_opt(name, multi_tensor=impl != "mxjax")
        if impl == "mxjax-packed":
            params, grads = opt.pack(params), opt.pack(grads)
        return mx.optimizer.jit_update(opt), opt.init(params), "update", params, grads
    tx = optax_opt(name)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1))
    return step, tx.init(params), "params-first", params, grads


def tree_bytes(t) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(t))


def bandwidth_gbs(n=100_000_000, reps=5) -> float:
    """In-place ``a += s*b`` on ``n`` float32 (reads a and b, writes a), donated."""
    a, b = jnp.ones(n), jnp.ones(n)
    axpy = jax.jit(lambda a, b: a + 1.5 * b, donate_argnums=0)
    a = axpy(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a = axpy(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 3 * 4 * n / best / 1e9


class Case:
    def __init__(self, impl, name, workload):
        self.impl, self.name, self.workload = impl, name, workload
        shapes = WORKLOADS[workload]()
        self.n = sum(int(jnp.prod(jnp.array(s))) for s in shapes)
        step, state, self.order, self.params, self.grads = build(
            impl, name, make_tree(shapes, 0), make_tree(shapes, 1)
        )
        t = time.perf_counter()
        if self.order == "update":
            compiled = step.lower(self.grads, state, self.params).compile()
        else:
            compiled = step.lower(self.params, state, self.grads).compile()
        self.compile_s = time.perf_counter() - t
        mem = compiled.memory_analysis()
        live = tree_bytes(self.params) + tree_bytes(self.grads) + tree_bytes(state)
        self.mem_ratio = (live + (mem.temp_size_in_bytes if mem else 0)) / live
        self.step, self.state, self.times = step, state, []

    def run(self, steps):
        t = time.perf_counter()
        for _ in range(steps):
            if self.order == "update":
                self.params, self.state = self.step(self.grads, self.state, self.params)
            else:
                self.params, self.state = self.step(self.params, self.state, self.grads)
        jax.block_until_ready(self.params)
        self.times.append((time.perf_counter() - t) / steps)

    def summary(self):
        return summarize(self.times)


def summarize(times: list[float]) -> tuple[float, float, int]:
    """(median, (max - min) / median, rounds dropped) of per-round times; a round above
    1.5x the best was disturbed and is dropped."""
    best = min(times)
    kept = [t for t in times if t <= 1.5 * best]
    med = statistics.median(kept)
    spread = (max(kept) - min(kept)) / med if len(kept) > 1 else 0.0
    return med, spread, len(times) - len(kept)


def machine() -> str:
    """The processor, core count and library versions, for a results table."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}), optax {optax.__version__}"
    )


def torch_version() -> str:
    try:
        import torch
    except ImportError:
        return "no PyTorch"
    return f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(BYTES))
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--impls", nargs="*", default=list(IMPLS), help="a subset prints its own table"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    bw = bandwidth_gbs()
    rows = []
    for wl in args.workloads:
        for name in args.only:
            cases = [Case(impl, name, wl) for impl in args.impls]
            torch_cases = [torch_case(impl, name, wl) for impl in TORCH_IMPLS]
            every = cases + [c for c in torch_cases if c is not None]
            steps = max(3, int(2e8 / (BYTES[name] * cases[0].n)))
            for c in every:
                c.run(1)  # warm up
                c.times.clear()
            for _ in range(rounds):  # interleaved
                for c in every:
                    c.run(steps)
            summ = [c.summary() for c in cases]
            tor = [None if c is None else c.summary() for c in torch_cases]
            fmt = lambda r: "—" if r is None else f"{r[0] * 1e3:.2f} ±{r[1]:.0%}"  # noqa: E731
            ratio = lambda t, r: "—" if r is None else f"{t / r[0]:.2f}"  # noqa: E731
            if args.impls != list(IMPLS):  # a subset: times, ns/param, ratios
                opx = summ[args.impls.index("optax")] if "optax" in args.impls else None
                rows.append(
                    f"| {name} | {wl} | "
                    + " | ".join(
                        f"{fmt(r)} | {r[0] / c.n * 1e9:.2f} | {ratio(r[0], opx)} "
                        f"| {ratio(r[0], tor[0])} | {c.compile_s:.2f}"
                        for c, r in zip(cases, summ, strict=True)
                    )
                    + f" | {fmt(tor[0])} | {fmt(tor[1])} |"
                )
                print(rows[-1], flush=True)
                continue
            (mxm, _, _), (mtm, _, _), (pm, _, _), (om, _, _) = summ
            best = min(mxm, mtm, pm)
            gbs = BYTES[name] * cases[0].n / best / 1e9
            rows.append(
                f"| {name} | {wl} | "
                + " | ".join(fmt(r) for r in [*summ, *tor])
                + f" | {mxm / om:.2f} | {mtm / om:.2f} | {pm / om:.2f} "
                f"| {ratio(mtm, tor[0])} | {ratio(pm, tor[0])} "
                f"| {mtm / cases[0].n * 1e9:.2f} | {pm / cases[0].n * 1e9:.2f} "
                f"| {gbs:.1f} | {gbs / bw:.0%} | "
                + " / ".join(f"{c.compile_s:.2f}" for c in cases)
                + " | "
                + " / ".join(f"{c.mem_ratio:.2f}" for c in cases)
                + f" | {sum(r[2] for r in [*summ, *tor] if r)} |"
            )
            print(rows[-1], flush=True)
            del cases
    header = (
        "| optimizer | workload | mxjax step ms | mxjax-mt step ms | mxjax-packed step ms "
        "| optax step ms | torch fused ms | torch foreach ms "
        "| mxjax/optax | mt/optax | packed/optax | mt/torch fused | packed/torch fused "
        "| mt ns/param | packed ns/param | best mxjax GB/s | % of a+=sb "
        "| compile s (mxjax / mt / packed / optax) | mem (mxjax / mt / packed / optax) "
        "| dropped rounds |\n|" + "---|" * 20
    )
    if args.impls != list(IMPLS):
        cols = "".join(
            f"| {i} step ms | {i} ns/param | {i}/optax | {i}/torch fused | {i} compile s "
            for i in args.impls
        )
        header = (
            f"| optimizer | workload {cols}| torch fused ms | torch foreach ms |\n|"
            + "---|" * (4 + 5 * len(args.impls))
        )
    described = (
        f"{machine()}, {torch_version()}; "
        f"in-place a += s*b bandwidth {bw:.1f} GB/s; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    text = (
        "# Optimizer step benchmark\n\n"
        f"Machine: {described}.\n\n"
        "mxjax through `mx.optimizer.jit_update` (donated, params first), with the "
        "default per-leaf state, with `multi_tensor=True` (mt: on the CPU, the "
        "custom call of `mxjax/_kernels`), and with `multi_tensor=True` on parameters "
        "and gradients packed by `opt.pack` (packed: one buffer per group); optax through "
        "`jax.jit` of `update` + `apply_updates` donated params-first (its best case); "
        "PyTorch's `step()` with `fused=True` / `foreach=True` where it has them. "
        "`mem` is (params + grads + state + the compiled step's temporaries) / (params + "
        "grads + state).\n\n" + header + "\n" + "\n".join(rows) + "\n"
    )
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
