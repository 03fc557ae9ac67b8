"""Benchmark a whole jitted training step (loss + grad + Adam) of flax.nnx models.

Run by hand (not in CI), on a quiet machine::

    python benchmarks/whole_step.py                    # three models, six paths
    python benchmarks/whole_step.py --quick            # tiny sizes, 1 short round
    python benchmarks/whole_step.py --models mlp --impls optax mxjax-nnx-mt mxjax-packed

Models (float32, one fixed random batch, softmax cross-entropy):

* ``resnet``: ResNet-18's layout for 32x32 images (3x3 stem, no max-pool, four stages of
  two basic blocks, widths w, 2w, 4w, 8w; BatchNorm in train mode, its statistics
  threaded through the step), 10 classes, batch 32, base width ``--resnet-width``.
* ``lm``: a causal transformer LM: 4 pre-LayerNorm blocks, d_model 256, 4 heads, MLP
  1024, sequence 128, vocabulary 4,096 (untied output layer), batch 8.
* ``mlp``: 500 residual layers ``x + tanh(Linear(x)) / sqrt(500)`` of width 32 and a
  Linear head: 1,002 parameter tensors, batch 8; the update is most of the step.

Paths, all Adam(lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8), each step one
``jax.jit`` with the carried state donated (flax's functional ``split``/``merge`` form
for the nnx paths: the jit sees plain pytrees, no per-call graph traversal):

* ``optax``: ``nnx.Optimizer(model, optax.adam(...), wrt=nnx.Param)``;
* ``mxjax-nnx`` / ``mxjax-nnx-mt``: the same with ``to_optax(create("adam", ...))``,
  per leaf (``multi_tensor=False``) / ``multi_tensor=True`` (what the default ``"auto"``
  chooses for these three models: each has at least 32 tensors);
* ``mxjax`` / ``mxjax-mt``: functional: the params of ``nnx.split(model, nnx.Param,
  ...)``, ``jax.value_and_grad`` and ``opt.update`` in one jit, donated params first as
  ``mx.optimizer.jit_update`` does; per leaf / ``multi_tensor=True``;
* ``mxjax-packed``: functional on ``opt.pack(params)`` (``multi_tensor=True``), the loss
  calling ``packed.unpack()``. (Not through ``nnx.Optimizer``: it updates the model's
  own per-tensor variables, so packed buffers would have to be the model's variables.)

For each (model, path): the compile time (trace + lower + XLA compile of the whole step
in a fresh ``jax.jit``, JAX's compilation cache off), the step time (median of
interleaved rounds after warm-up, with the spread; disturbed rounds dropped as in
``step.py``), both relative to optax, and the update's share of the step: the same
path's update alone (jitted and donated the same way, on the same state and a
gradient made from the parameters inside the same jit) divided by its step time. Before timing, every path runs 3 steps from the
same initial model and the loss after them is compared: the mxjax paths must agree to
rtol 1e-4, and with optax (whose Adam puts epsilon and the bias correction elsewhere)
to rtol 1e-2; the script stops otherwise.

The full run takes ~8-10 minutes on a quiet 2-core CPU, much of it compiling the MLP's
1,002-tensor steps (~30-60 s each on the per-leaf paths); ``--quick`` ~1.5 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

import mxjax as mx
from mxjax.adapters import to_optax

sys.path.insert(0, os.path.dirname(__file__))
from step import machine, summarize  # noqa: E402

IMPLS = ("optax", "mxjax-nnx", "mxjax-nnx-mt", "mxjax", "mxjax-mt", "mxjax-packed")
ADAM = dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8)
SANITY_STEPS = 3


# ------------------------------------------------------------------------------ models


class BasicBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, rngs: nnx.Rngs):
        conv = lambda i, o, k, s: nnx.Conv(i, o, (k, k), s, use_bias=False, rngs=rngs)  # noqa: E731
        self.conv1, self.bn1 = (
            conv(cin, cout, 3, stride),
            nnx.BatchNorm(cout, rngs=rngs),
        )
        self.conv2, self.bn2 = conv(cout, cout, 3, 1), nnx.BatchNorm(cout, rngs=rngs)
        self.proj = nnx.data(None)  # a 1x1 convolution where the shape changes
        if stride != 1 or cin != cout:
            self.proj = nnx.Sequential(
                conv(cin, cout, 1, stride), nnx.BatchNorm(cout, rngs=rngs)
            )

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return jax.nn.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet(nnx.Module):
    def __init__(self, width: int, per_stage: int, rngs: nnx.Rngs, classes: int = 10):
        self.stem = nnx.Conv(3, width, (3, 3), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        blocks, cin = [], width
        for stage in range(4):
            cout = width * 2**stage
            for b in range(per_stage):
                blocks.append(BasicBlock(cin, cout, 2 if stage and not b else 1, rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(cin, classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


class Block(nnx.Module):
    def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
        self.heads = heads
        self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.qkv, self.out = (
            nnx.Linear(d, 3 * d, rngs=rngs),
            nnx.Linear(d, d, rngs=rngs),
        )
        self.up, self.down = (
            nnx.Linear(d, 4 * d, rngs=rngs),
            nnx.Linear(4 * d, d, rngs=rngs),
        )

    def __call__(self, x):
        b, t, d = x.shape
        q, k, v = jnp.split(
            self.qkv(self.ln1(x)).reshape(b, t, 3 * self.heads, -1), 3, axis=2
        )
        x = x + self.out(
            jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(b, t, d)
        )
        return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class TransformerLM(nnx.Module):
    def __init__(
        self, layers: int, d: int, heads: int, seq: int, vocab: int, rngs: nnx.Rngs
    ):
        self.embed, self.pos = (
            nnx.Embed(vocab, d, rngs=rngs),
            nnx.Embed(seq, d, rngs=rngs),
        )
        self.blocks = nnx.List([Block(d, heads, rngs) for _ in range(layers)])
        self.ln, self.head = (
            nnx.LayerNorm(d, rngs=rngs),
            nnx.Linear(d, vocab, rngs=rngs),
        )

    def __call__(self, tokens):
        x = self.embed(tokens) + self.pos(jnp.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class DeepMLP(nnx.Module):
    def __init__(self, depth: int, width: int, rngs: nnx.Rngs, classes: int = 10):
        self.layers = nnx.List(
            [nnx.Linear(width, width, rngs=rngs) for _ in range(depth)]
        )
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = x + jnp.tanh(layer(x)) / math.sqrt(len(self.layers))
        return self.head(x)


def make_model(
    name: str, quick: bool, resnet_width: int
) -> tuple[nnx.Module, tuple, str]:
    """(model, (inputs, integer labels), description) from fixed seeds."""
    rngs, (kx, ky) = nnx.Rngs(0), jax.random.split(jax.random.key(1))
    if name == "resnet":
        w, per_stage, batch = (4, 1, 4) if quick else (resnet_width, 2, 32)
        x = jax.random.normal(kx, (batch, 32, 32, 3))
        y = jax.random.randint(ky, (batch,), 0, 10)
        desc = f"ResNet-{8 * per_stage + 2} layout, width {w}, 32x32, batch {batch}"
        return ResNet(w, per_stage, rngs), (x, y), desc
    if name == "lm":
        layers, d, heads, seq, vocab, batch = (
            (1, 32, 2, 16, 64, 2) if quick else (4, 256, 4, 128, 4096, 8)
        )
        tokens = jax.random.randint(kx, (batch, seq + 1), 0, vocab)
        desc = (
            f"{layers} layers, d {d}, {heads} heads, seq {seq}, vocab {vocab}, "
            f"batch {batch}"
        )
        return (
            TransformerLM(layers, d, heads, seq, vocab, rngs),
            (tokens[:, :-1], tokens[:, 1:]),
            desc,
        )
    if name == "mlp":
        depth, width, batch = (20, 8, 2) if quick else (500, 32, 8)
        x = jax.random.normal(kx, (batch, width))
        y = jax.random.randint(ky, (batch,), 0, 10)
        return (
            DeepMLP(depth, width, rngs),
            (x, y),
            f"{depth} residual layers of width {width}, batch {batch}",
        )
    raise ValueError(f"unknown model {name!r}; choose from resnet, lm, mlp")


def loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


# ------------------------------------------------------------------------------- paths


@dataclasses.dataclass
class Path:
    """One implementation on one model: ``step(carry, x, y) -> (carry, loss)`` and
    ``update(carry) -> carry`` (both donate ``carry``): the optimizer's update alone,
    on a gradient made from the parameters in the same jit (a gradient passed in would
    add one argument per tensor to every call: ~10 µs each to dispatch)."""

    carry: Any
    step: Callable[..., Any]
    update: Callable[..., Any]


def fake_grads(params: Any) -> Any:
    """A gradient for timing the update alone (Adam's cost is the same for any)."""
    return jax.tree.map(lambda p: 1e-3 * p, params)


def mxjax_adam(multi_tensor: bool) -> mx.optimizer.Optimizer:
    return mx.optimizer.create("adam", multi_tensor=multi_tensor, **ADAM)


def nnx_path(model: nnx.Module, tx: optax.GradientTransformation) -> Path:
    """``nnx.Optimizer`` in flax's functional form: ``split`` once, ``merge`` in jit."""
    graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    def update(state):
        model, optimizer = nnx.merge(graphdef, state)
        optimizer.update(model, fake_grads(nnx.state(model, nnx.Param)))
        return nnx.state((model, optimizer))

    return Path(state, step, update)


def functional_path(
    model: nnx.Module, opt: mx.optimizer.Optimizer, packed: bool
) -> Path:
    """mxjax on the params of ``nnx.split`` (plain arrays: ``nnx.as_pure``); the other
    variables (BatchNorm's statistics) are carried after them."""
    graphdef, params, rest = nnx.as_pure(nnx.split(model, nnx.Param, ...))
    if packed:
        params = opt.pack(params)

    def loss_and_rest(params, rest, x, y):
        model = nnx.merge(graphdef, params.unpack() if packed else params, rest)
        loss = loss_fn(model, x, y)
        return loss, nnx.as_pure(nnx.split(model, nnx.Param, ...)[2])

    def step(carry, x, y):
        params, state, rest = carry
        (loss, rest), grads = jax.value_and_grad(loss_and_rest, has_aux=True)(
            params, rest, x, y
        )
        params, state = opt.update(grads, state, params)
        return (params, state, rest), loss

    def update(carry):
        params, state, rest = carry
        return (*opt.update(fake_grads(params), state, params), rest)

    return Path((params, opt.init(params), rest), step, update)


def build(impl: str, model: nnx.Module) -> Path:
    graphdef, variables = nnx.split(model)  # every path starts from its own copy
    model = nnx.merge(graphdef, jax.tree.map(jnp.copy, variables))
    if impl == "optax":
        return nnx_path(
            model, optax.adam(ADAM["learning_rate"], b1=0.9, b2=0.999, eps=1e-8)
        )
    if impl in ("mxjax-nnx", "mxjax-nnx-mt"):
        return nnx_path(model, to_optax(mxjax_adam(impl.endswith("-mt"))))
    if impl in ("mxjax", "mxjax-mt", "mxjax-packed"):
        return functional_path(
            model, mxjax_adam(impl != "mxjax"), impl == "mxjax-packed"
        )
    raise ValueError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")


# ----------------------------------------------------------------------------- measure


class Case:
    """A path's compiled step and update, their carries and per-round times."""

    def __init__(self, impl: str, model: nnx.Module, batch: tuple):
        self.impl, self.batch = impl, batch
        path = build(impl, model)
        t = time.perf_counter()
        self.step = (
            jax.jit(path.step, donate_argnums=0).lower(path.carry, *batch).compile()
        )
        self.compile_s = time.perf_counter() - t
        print(f"  {impl}: compiled in {self.compile_s:.2f} s", flush=True)
        self.path, self.carry, self.times, self.update_times = path, path.carry, [], []
        self.update_carry = jax.tree.map(jnp.copy, path.carry)  # the update's own copy
        self.n_steps = self.n_updates = 1  # per round; sized after the warm-up

    def compile_update(self) -> None:
        """Compile the update alone (timed with :meth:`run_updates`)."""
        update = jax.jit(self.path.update, donate_argnums=0)
        self.update = update.lower(self.update_carry).compile()

    def sanity_losses(self) -> tuple[float, float]:
        """The loss of the initial model and after ``SANITY_STEPS`` steps."""
        losses = []
        for _ in range(SANITY_STEPS + 1):
            self.carry, loss = self.step(self.carry, *self.batch)
            losses.append(float(loss))
        return losses[0], losses[-1]

    def run_steps(self, n: int) -> None:
        t = time.perf_counter()
        for _ in range(n):
            self.carry, loss = self.step(self.carry, *self.batch)
        jax.block_until_ready((self.carry, loss))
        self.times.append((time.perf_counter() - t) / n)

    def run_updates(self, n: int) -> None:
        t = time.perf_counter()
        for _ in range(n):
            self.update_carry = self.update(self.update_carry)
        jax.block_until_ready(self.update_carry)
        self.update_times.append((time.perf_counter() - t) / n)


def check_losses(losses: dict[str, tuple[float, float]], model: str) -> None:
    """Every path's loss fell, from the same initial loss, and after ``SANITY_STEPS``
    steps the mxjax paths' agree to 1e-4 relative, with optax's to 1e-2; else exit."""
    first = next(iter(losses.values()))[0]
    after = {k: v[1] for k, v in losses.items()}
    mxjax_after = [v for k, v in after.items() if k != "optax"]
    ref = mxjax_after[0] if mxjax_after else after["optax"]
    bad = [
        k
        for k, (start, end) in losses.items()
        if not (math.isclose(start, first, rel_tol=1e-6) and end < start)
        or not math.isclose(end, ref, rel_tol=1e-2 if k == "optax" else 1e-4)
    ]
    if bad:
        raise SystemExit(
            f"{model}: {', '.join(bad)} disagree; (initial loss, loss after "
            f"{SANITY_STEPS} steps) by path: {losses}"
        )


def count(tree: Any) -> tuple[int, int]:
    leaves = jax.tree.leaves(tree)
    return len(leaves), sum(x.size for x in leaves)


def measure(
    name: str, impls: list[str], rounds: int, quick: bool, resnet_width: int
) -> list[str]:
    """The table rows of one model (also printed as they come)."""
    model, batch, desc = make_model(name, quick, resnet_width)
    tensors, size = count(nnx.state(model, nnx.Param))
    print(
        f"\n{name}: {desc}; {tensors} parameter tensors, {size / 1e6:.2f}M parameters",
        flush=True,
    )
    cases = [Case(impl, model, batch) for impl in impls]
    losses = {c.impl: c.sanity_losses() for c in cases}
    check_losses(losses, name)
    print(
        f"loss {next(iter(losses.values()))[0]:.6f}, after {SANITY_STEPS} steps: "
        + ", ".join(f"{k} {v[1]:.6f}" for k, v in losses.items())
    )
    round_s = 0.1 if quick else 1.0
    # Warm up the update; size a round to ~round_s of steps and ~round_s of updates.
    for c in cases:
        c.compile_update()
        c.run_updates(1)
        c.run_updates(1)
        c.run_steps(1)
        c.n_steps = max(1, round(round_s / c.times.pop()))
        c.n_updates = max(1, round(round_s / c.update_times.pop()))
        c.update_times.clear()
    for _ in range(rounds):  # interleaved
        for c in cases:
            c.run_steps(c.n_steps)
            c.run_updates(c.n_updates)
    stats = {
        c.impl: (summarize(c.times), summarize(c.update_times), c.compile_s)
        for c in cases
    }
    base = stats.get("optax")
    rows = []
    for impl, ((step, spread, dropped), (upd, _, _), compile_s) in stats.items():
        vs_step = f"{step / base[0][0]:.2f}" if base else "—"
        vs_compile = f"{compile_s / base[2]:.2f}" if base else "—"
        rows.append(
            f"| {name} | {impl} | {step * 1e3:.1f} ±{spread:.0%} | {vs_step} "
            f"| {compile_s:.2f} | {vs_compile} | {upd * 1e3:.2f} | {upd / step:.0%} "
            f"| {dropped} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["resnet", "lm", "mlp"])
    ap.add_argument("--impls", nargs="*", default=list(IMPLS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--resnet-width", type=int, default=24)
    ap.add_argument("--quick", action="store_true", help="tiny models, 1 round")
    args = ap.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    rounds = 1 if args.quick else args.rounds
    rows = [
        r
        for m in args.models
        for r in measure(m, args.impls, rounds, args.quick, args.resnet_width)
    ]
    print(
        f"\n# Whole training step\n\nMachine: {machine()}, flax {flax.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}; {rounds} rounds.\n\n"
        "| model | path | step ms | step / optax | compile s | compile / optax "
        "| update alone ms | update share of step | dropped rounds |\n|"
        + "---|" * 9
        + "\n"
        + "\n".join(rows)
    )


if __name__ == "__main__":
    main()
