"""Write the notebooks in ``notebooks/`` from the cells below and execute them in place.

Run from the repository root (``python tools/make_notebooks.py [names...]``) after
changing a notebook here; commit the executed ``.ipynb`` files (with their plots) so
they render on GitHub. ``tests/notebooks/test_notebooks.py`` re-executes them.
Needs the ``test`` extra (nbclient, nbformat, ipykernel, matplotlib, flax).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"

SETUP = """\
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import mxjax as mx

plt.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

# --------------------------------------------------------------------------------- 01
NOTEBOOKS["01_seed_walkthrough"] = [
    (
        "md",
        """\
# 01 · The MXNet walkthrough, step by step

MXNet's optimization guide trains one model like this:

```python
data = mx.symbol.Variable('data')
label = mx.symbol.Variable('softmax_label')
fc = mx.symbol.FullyConnected(data, name='fc', num_hidden=10)
loss = mx.symbol.SoftmaxOutput(fc, label, name='softmax')
mod = mx.mod.Module(loss)
mod.bind(data_shapes=[('data', (128, 20))], label_shapes=[('softmax_label', (128,))])
mod.init_params(mx.initializer.Uniform(scale=1.0))
lr_sch = mx.lr_scheduler.FactorScheduler(step=100, factor=0.9)
mod.init_optimizer(optimizer='sgd',
                   optimizer_params=(('learning_rate', 0.1), ('lr_scheduler', lr_sch)))
mod.fit(...)
```

Here is the same job in mxjax, on real data: the UCI handwritten digits bundled with
mxjax (8×8 images, so the input has 64 features instead of the guide's 20).
`mxjax train` on the command line runs exactly this.""",
    ),
    ("code", SETUP),
    ("md", "## The data: 1,797 digits, 80 % for training, 20 % held out"),
    (
        "code",
        """\
data = mx.training.load_digits(val_fraction=0.2, seed=0)
print(data.x_train.shape, data.x_val.shape)
fig, axes = plt.subplots(1, 10, figsize=(10, 1.3))
for ax, img, label in zip(axes, data.x_train, data.y_train):
    ax.imshow(img.reshape(8, 8), cmap="gray_r")
    ax.set_title(int(label))
    ax.axis("off")""",
    ),
    (
        "md",
        """\
## `bind` + `init_params`: shapes, then MXNet's name dispatch

`FullyConnected(name='fc', num_hidden=10)` owns `fc_weight` (MXNet layout `(out, in)`)
and `fc_bias`. `init_params` names each leaf by its path and dispatches like MXNet:
`*weight` gets the initializer's rule, `*bias` gets 0.""",
    ),
    (
        "code",
        """\
shapes = mx.training.mlp_shapes(in_features=64, hidden=0, num_classes=10)
params = mx.initializer.init_params(
    mx.initializer.Uniform(scale=1.0), jax.random.key(0), shapes
)
print(jax.tree.map(jnp.shape, params))
fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.5))
a.hist(np.ravel(params["fc"]["weight"]), bins=40)
a.set_title("fc_weight ~ U[-1, 1]")
b.bar(range(10), params["fc"]["bias"])
b.set_title("fc_bias = 0")
b.set_ylim(-1, 1);""",
    ),
    (
        "md",
        """\
## `init_optimizer`: SGD at 0.1, ×0.9 every 100 updates

The guide builds `FactorScheduler(step=100, factor=0.9)` with its default
`base_lr=0.01` and gives the optimizer `learning_rate=0.1`: MXNet overwrites the
scheduler's `base_lr` with the optimizer's rate (and logs it); mxjax does the same and
warns. `Module` also sets `rescale_grad = 1/batch_size`, because `SoftmaxOutput` sums
the per-sample gradients of the batch.""",
    ),
    (
        "code",
        """\
lr_sch = mx.lr_scheduler.FactorScheduler(step=100, factor=0.9)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    opt = mx.optimizer.create(
        "sgd", learning_rate=0.1, lr_scheduler=lr_sch, rescale_grad=1 / 128
    )
print("warning:", caught[0].message)
rate = mx.training.lr_schedule(opt)
print([round(float(rate(n)), 4) for n in (1, 100, 101, 200, 201, 1000)])""",
    ),
    (
        "md",
        """\
## `fit`: a jitted, donated step

`mx.fit(loss_fn, params, batches, optimizer, num_epoch)` compiles one step
(`jax.jit(step, donate_argnums=(0, 1))`: gradient, then `optimizer.update`, in place)
and records the loss, the metrics and the learning rate of every update. Batches of 128
are reshuffled each epoch; the last one is padded by wrapping around, as MXNet's
`NDArrayIter`.""",
    ),
    (
        "code",
        """\
batches = mx.training.batch_iterator(data.x_train, data.y_train, 128, seed=0)


def validation(p):
    return {"val acc": mx.training.accuracy(p, data.x_val, data.y_val)}


params, state, history = mx.fit(
    mx.training.softmax_loss, params, batches, opt, num_epoch=50,
    has_aux=True, eval_fn=validation,
)
print(history.table(["epoch", "ce", "acc", "val acc", "lr"]).splitlines()[0])
for line in history.table(["epoch", "ce", "acc", "val acc", "lr"]).splitlines()[10::10]:
    print(line)
print(f"{history.steps} updates, {1e3 * history.step_time:.2f} ms per update")""",
    ),
    (
        "code",
        """\
steps = np.arange(1, history.steps + 1)
fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.2))
a.plot(steps, history.metrics["ce"], lw=0.6)
a.set_yscale("log")
a.set_title("cross-entropy per sample")
b.plot(steps, history.lr, color="C2")
b.set_title("learning rate (FactorScheduler)")
ends = np.cumsum([e["steps"] for e in history.epochs])
c.plot(ends, [e["acc"] for e in history.epochs], label="train (running)")
c.plot(ends, [e["val acc"] for e in history.epochs], label="validation")
c.set_title("accuracy")
c.legend()
for ax in (a, b, c):
    ax.set_xlabel("update");""",
    ),
    ("md", "## What the model sees: the 10 rows of `fc_weight`, and some predictions"),
    (
        "code",
        """\
fig, axes = plt.subplots(2, 10, figsize=(11, 2.8))
w = np.asarray(params["fc"]["weight"])
pred = np.asarray(jnp.argmax(mx.training.mlp_apply(params, data.x_val), axis=1))
for k in range(10):
    axes[0, k].imshow(w[k].reshape(8, 8), cmap="RdBu")
    axes[0, k].set_title(f"w[{k}]")
    axes[1, k].imshow(data.x_val[k].reshape(8, 8), cmap="gray_r")
    ok = pred[k] == data.y_val[k]
    axes[1, k].set_title(f"{pred[k]}", color="green" if ok else "red")
for ax in axes.ravel():
    ax.axis("off")
print(f"validation accuracy: {float(np.mean(pred == data.y_val)):.3f}")""",
    ),
    (
        "md",
        """\
## Porting your MXNet optimizer

The guide's recipe — *subclass `Optimizer`, implement `create_state` and `update`, add
`@mx.optimizer.Optimizer.register`* — works as written, with NDArray operations turned
into `jnp`, in-place writes into new values, and `update` returning
`(new_weight, new_state)`. Below, MXNet 1.9.1's own `Signum`-like momentum-sign rule as a
user would write it; the instance is an ordinary mxjax optimizer (pure `init`/`update`,
jit, `to_optax`), and `self._get_lr`, `self._get_wd`, `self.rescale_grad`,
`self.clip_gradient` and the update count behave as in MXNet.""",
    ),
    (
        "code",
        """\
@mx.optimizer.Optimizer.register
class MySignum(mx.optimizer.Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.9, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return jnp.zeros(weight.shape, weight.dtype)

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = jnp.clip(grad, -self.clip_gradient, self.clip_gradient)
        mom = self.momentum * state - (1 - self.momentum) * (wd * weight + grad)
        return weight + lr * jnp.sign(mom), mom


mine = mx.optimizer.create("mysignum", learning_rate=0.05)
builtin = mx.optimizer.Signum(learning_rate=0.05)
p = {"fc_weight": jnp.linspace(-1.0, 1.0, 6)}
(s1, s2), p1, p2 = (mine.init(p), builtin.init(p)), p, p
for _ in range(5):
    g = jax.tree.map(lambda w: 2 * w - 0.3, p1)
    p1, s1 = jax.jit(mine.update)(g, s1, p1)
    p2, s2 = builtin.update(jax.tree.map(lambda w: 2 * w - 0.3, p2), s2, p2)
print(mine)
print("ported == built-in:", bool(jnp.allclose(p1["fc_weight"], p2["fc_weight"])))
print("update count:", int(s1.count))""",
    ),
]

# --------------------------------------------------------------------------------- 02
NOTEBOOKS["02_optimizer_zoo"] = [
    (
        "md",
        """\
# 02 · The optimizer zoo

Every optimizer in the registry (`mx.optimizer.names()`), first on the Rosenbrock
function, then on the digits. Each has MXNet's defaults apart from the learning rate.""",
    ),
    ("code", SETUP),
    ("code", "names = mx.optimizer.names()\nprint(len(names), names)"),
    (
        "md",
        """\
## Rosenbrock: 500 updates from (−1.5, 2), the best of 8 learning rates

The learning rate may be any step→rate function, so `learning_rate=lambda n: lr` with a
traced `lr` lets `jax.vmap` run all eight rates in one compiled scan per optimizer.""",
    ),
    (
        "code",
        """\
def rosenbrock(p):  # the point is a (1, 2) weight: GroupAdaGrad takes only 2-D ones
    x, y = p["xy"][0, 0], p["xy"][0, 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


LRS = jnp.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1])
START = jnp.array([[-1.5, 2.0]])


def paths(name, steps=500):
    def run(lr):
        opt = mx.optimizer.create(name, learning_rate=lambda n: lr)
        p = {"xy": START}

        def body(carry, _):
            p, s = carry
            p, s = opt.update(jax.grad(rosenbrock)(p), s, p)
            return (p, s), p["xy"][0]

        _, xy = jax.lax.scan(body, (p, opt.init(p)), None, length=steps)
        return jnp.concatenate([START, xy])

    return np.asarray(jax.jit(jax.vmap(run))(LRS))


best = {}
for name in names:
    xy = paths(name)
    final = np.array([rosenbrock({"xy": q[-1:]}) for q in xy])
    final[~np.isfinite(final)] = np.inf
    i = int(np.argmin(final))
    best[name] = (float(LRS[i]), final[i], xy[i])
for name, (lr, f, _) in sorted(best.items(), key=lambda kv: kv[1][1]):
    print(f"{name:>12}  lr={lr:<7g} f(final)={f:.3g}")""",
    ),
    (
        "code",
        """\
X, Y = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 3, 200))
Z = (1 - X) ** 2 + 100 * (Y - X**2) ** 2
cols = 6
rows = -(-len(names) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.2 * rows), sharex=True,
                         sharey=True, dpi=60)
for ax in axes.ravel()[len(names):]:
    ax.axis("off")
for ax, name in zip(axes.ravel(), names):
    lr, f, xy = best[name]
    ax.contour(X, Y, np.log1p(Z), levels=10, linewidths=0.5, cmap="Greys")
    ok = np.all(np.isfinite(xy), axis=1)
    ax.plot(xy[ok, 0], xy[ok, 1], lw=1.2, color="C3")
    ax.plot(1, 1, "k*", ms=8)
    ax.set_title(f"{name} (lr {lr:g})", fontsize=9)
    ax.set_xlim(-2, 2)
    ax.set_ylim(-1, 3)
fig.tight_layout()""",
    ),
    (
        "md",
        """\
## The digits: 15 epochs each, same initial weights and batches

The seed's model and data (`mxjax compare` does the same from the command line). Every
optimizer runs with its own MXNet default learning rate, so this is each one *out of
the box*. Adamax has no ε and divides 0/0 on a pixel that is blank in a whole batch
(MXNet's behaviour), so it ends in NaN here; optimizers that take only 2-D weights
(GroupAdaGrad) train the model without biases.""",
    ),
    (
        "code",
        """\
data = mx.training.load_digits()

def weights(bias=True):
    shapes = mx.training.mlp_shapes(hidden=32, bias=bias)
    return mx.initializer.init_params(mx.initializer.Xavier(), jax.random.key(0), shapes)


batches = mx.training.batch_iterator(data.x_train, data.y_train, 128, seed=0)
runs = {}
for name in names:
    opt = mx.optimizer.create(name, rescale_grad=1 / 128)
    try:
        p0 = weights()
        jax.eval_shape(opt.init, p0)
    except ValueError:  # only 2-D weights: no biases
        p0 = weights(bias=False)
    p, _, h = mx.fit(mx.training.softmax_loss, p0, batches, opt, 15, has_aux=True)
    runs[name] = (h, float(mx.training.accuracy(p, data.x_val, data.y_val)))""",
    ),
    (
        "code",
        """\
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[3, 2])
for k, (name, (h, acc)) in enumerate(runs.items()):
    ends = np.cumsum([e["steps"] for e in h.epochs])
    a.plot(ends, [e["ce"] for e in h.epochs], label=name, color=plt.cm.tab20(k % 20),
           ls="-" if k < 20 else "--")
a.set_yscale("log")
a.set_xlabel("update")
a.set_ylabel("cross-entropy (epoch mean)")
a.legend(ncol=2, fontsize=7)
order = sorted(runs, key=lambda n: np.nan_to_num(runs[n][1]))
b.barh(order, [np.nan_to_num(runs[n][1]) for n in order], color="C0")
b.set_xlabel("validation accuracy after 15 epochs")
b.tick_params(axis="y", labelsize=8)
fig.tight_layout()""",
    ),
]

# --------------------------------------------------------------------------------- 03
NOTEBOOKS["03_schedulers"] = [
    (
        "md",
        """\
# 03 · Learning-rate schedulers, with warmup, beside optax

Every registered scheduler with a 20-update linear warmup, next to the optax schedule
built to match it. MXNet counts updates from 1 (`num_update`), optax from 0 (`count`):
`mxjax.adapters.to_optax_schedule(s)` is `lambda count: s(count + 1)`.

Two MXNet conventions show in the optax versions: the warmup ramps from
`warmup_begin_lr` at `num_update = 0`, and `Factor`/`MultiFactor` count their steps from
update 0, not from the end of the warmup.""",
    ),
    ("code", SETUP + "\nimport optax\n\nfrom mxjax.adapters import to_optax_schedule"),
    (
        "code",
        """\
W, N, BASE = 20, 300, 0.1
warm = dict(base_lr=BASE, warmup_steps=W, warmup_begin_lr=0.0)
mx_scheds = {
    "factor": mx.lr_scheduler.FactorScheduler(step=50, factor=0.7, **warm),
    "multifactor": mx.lr_scheduler.MultiFactorScheduler(
        step=[100, 150, 250], factor=0.5, **warm
    ),
    "poly": mx.lr_scheduler.PolyScheduler(max_update=N, pwr=2, final_lr=0.001, **warm),
    "cosine": mx.lr_scheduler.CosineScheduler(max_update=N, final_lr=0.001, **warm),
}


def ramp():  # MXNet's warmup at num_update = count + 1: BASE * (count + 1) / W
    return optax.linear_schedule(BASE / W, BASE, W - 1)


def after_warmup(f):  # join_schedules restarts the count at the boundary: undo that
    return optax.join_schedules([ramp(), lambda c: f(c + W - 1)], [W - 1])


optax_scheds = {
    "factor": after_warmup(
        optax.exponential_decay(BASE, transition_steps=50, decay_rate=0.7,
                                staircase=True)
    ),
    "multifactor": after_warmup(
        optax.piecewise_constant_schedule(BASE, {100: 0.5, 150: 0.5, 250: 0.5})
    ),
    "poly": optax.join_schedules(
        [ramp(), optax.polynomial_schedule(BASE, 0.001, 2, N - W)], [W - 1]
    ),
    "cosine": optax.join_schedules(
        [ramp(), optax.cosine_decay_schedule(BASE, N - W, alpha=0.001 / BASE)], [W - 1]
    ),
}
registered = {mx.lr_scheduler.registry.get(n) for n in mx.lr_scheduler.names()}
print("registered schedulers not shown here:",
      sorted(c.__name__ for c in registered - {type(s) for s in mx_scheds.values()}))""",
    ),
    (
        "code",
        """\
count = jnp.arange(N + 40)
fig, axes = plt.subplots(2, len(mx_scheds), figsize=(14, 5), sharex=True,
                         height_ratios=[3, 1])
for k, (name, s) in enumerate(mx_scheds.items()):
    ours = np.asarray(jax.vmap(to_optax_schedule(s))(count))
    theirs = np.asarray(jax.vmap(optax_scheds[name])(count))
    axes[0, k].plot(count, ours, lw=2.5, label="mxjax " + type(s).__name__)
    axes[0, k].plot(count, theirs, "--", color="k", lw=1, label="optax")
    axes[0, k].axvline(W, color="gray", lw=0.5)
    axes[0, k].set_title(name)
    axes[0, k].legend(fontsize=8)
    axes[1, k].plot(count, ours - theirs, color="C3")
    axes[1, k].set_xlabel("optax count (= num_update - 1)")
    print(f"{name:>12}: max |mxjax - optax| = {np.max(np.abs(ours - theirs)):.2e}")
axes[0, 0].set_ylabel("learning rate")
axes[1, 0].set_ylabel("difference")
fig.tight_layout()""",
    ),
    (
        "md",
        """\
## From the command line

`mxjax train --lr-scheduler NAME:ARG=VALUE,...` selects any of them; a missing
`max_update` is the run's length, and `base_lr` is the optimizer's `learning_rate`:

```
mxjax train --lr-scheduler cosine:warmup_steps=50,final_lr=0.001
mxjax train --lr-scheduler multifactor:step=[200,400],factor=0.5
```""",
    ),
]

# --------------------------------------------------------------------------------- 04
NOTEBOOKS["04_initializers"] = [
    (
        "md",
        """\
# 04 · Initializers

MXNet's initializers are `jax.nn.initializers`-style functions `init(key, shape,
dtype)` in mxjax (MXNet layout `(out, in, *kernel)` by default), plus MXNet's name
dispatch in `init_params`.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
key = jax.random.key(0)
shape = (256, 128)  # a fully connected weight: 256 outputs, 128 inputs
inits = {
    "Uniform(0.07)": mx.initializer.Uniform(0.07),
    "Normal(0.01)": mx.initializer.Normal(0.01),
    "Xavier()": mx.initializer.Xavier(),
    "Xavier(gaussian, in, 2)": mx.initializer.Xavier("gaussian", "in", 2),
    "MSRAPrelu()": mx.initializer.MSRAPrelu(),
    "Orthogonal()": mx.initializer.Orthogonal(),
}
fig, axes = plt.subplots(1, len(inits), figsize=(15, 2.6))
for ax, (label, init) in zip(axes, inits.items()):
    w = np.ravel(init(key, shape))
    ax.hist(w, bins=50, color="C0")
    ax.set_title(f"{label}\\nstd {w.std():.3f}", fontsize=9)
    ax.set_yticks([])
fig.tight_layout()""",
    ),
    (
        "md",
        """\
Xavier's uniform range is `±sqrt(magnitude / fan)` (`fan` is the mean of the two by
default), with MXNet's fans:
`fan_in = shape[1] · prod(shape[2:])`, `fan_out = shape[0] · prod(shape[2:])`.""",
    ),
    (
        "code",
        """\
w = mx.initializer.Xavier(magnitude=3)(key, shape)
fan_in, fan_out = mx.initializer.compute_fans(shape)
bound = np.sqrt(3 / ((fan_in + fan_out) / 2))
print(f"fans {fan_in, fan_out}: bound {bound:.4f}, max |w| {float(jnp.abs(w).max()):.4f}")""",
    ),
    (
        "md",
        """\
## Bilinear: the upsampling kernel

`Bilinear()` fills a 4-D deconvolution weight with a bilinear interpolation kernel
(every `(out, in)` channel pair gets the same kernel, as MXNet).""",
    ),
    (
        "code",
        """\
k = np.asarray(mx.initializer.Bilinear()(key, (1, 1, 8, 8)))[0, 0]
fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3))
im = a.imshow(k, cmap="viridis")
a.set_title("Bilinear()(key, (1, 1, 8, 8))")
fig.colorbar(im, ax=a)
b.plot(k[3], "o-", label="row 3")
b.plot(k[:, 3], "s--", label="column 3")
b.set_title("a separable tent")
b.legend()
print(np.round(k[3], 4))""",
    ),
    (
        "md",
        """\
## Orthogonal: `W Wᵀ = scale² I` (rows orthonormal up to `scale`)

For a `(out, in)` weight with `out <= in`, the rows are orthogonal; for `out > in`, the
columns.""",
    ),
    (
        "code",
        """\
for shape in [(64, 256), (256, 64), (32, 4, 3, 3)]:
    w = np.asarray(mx.initializer.Orthogonal(scale=1.414)(key, shape))
    m = w.reshape(shape[0], -1)
    g = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    err = np.abs(g - 1.414**2 * np.eye(len(g))).max()
    print(f"{str(shape):>16}: max |gram - scale^2 I| = {err:.1e}")
w = np.asarray(mx.initializer.Orthogonal(scale=1.0)(key, (64, 256)))
plt.figure(figsize=(3.5, 3))
plt.imshow(w @ w.T, cmap="RdBu", vmin=-1, vmax=1)
plt.title("W Wᵀ for a (64, 256) weight")
plt.colorbar();""",
    ),
    (
        "md",
        "## Name dispatch: `init_params` treats `*_weight`, `*_bias`, `*_gamma`, ... "
        "as MXNet does",
    ),
    (
        "code",
        """\
shapes = {
    "conv0": {"weight": (8, 3, 3, 3), "bias": (8,)},
    "bn0": {"gamma": (8,), "beta": (8,), "moving_mean": (8,), "moving_var": (8,)},
    "fc": {"weight": (10, 72), "bias": (10,)},
}
params = mx.initializer.init_params(
    mx.initializer.Xavier(), key, shapes, per_param={"fc_bias": mx.initializer.Constant(0.1)}
)
for name, leaf in zip(mx.optimizer.leaf_names(params), jax.tree.leaves(params)):
    v = np.ravel(leaf)
    print(f"{name:>16} {str(leaf.shape):>14}  mean {v.mean():+.3f}  std {v.std():.3f}")""",
    ),
]

# --------------------------------------------------------------------------------- 05
NOTEBOOKS["05_optax_flax_interop"] = [
    (
        "md",
        """\
# 05 · optax and flax interop

`mxjax.adapters.to_optax(opt)` makes any mxjax optimizer an
`optax.GradientTransformation`, so it goes in `optax.chain`, `optax.MultiSteps`,
`flax.nnx.Optimizer`, ...; mxjax initializers are `jax.nn.initializers` and go in
`kernel_init` (flax kernels are `(in, out)`: pass `in_axis=-2, out_axis=-1`).""",
    ),
    (
        "code",
        SETUP + "\nimport optax\nfrom flax import nnx\n\n"
        "from mxjax.adapters import to_optax, to_optax_schedule",
    ),
    (
        "md",
        """\
## `to_optax` inside `optax.chain`

Global-norm clipping (optax) before MXNet's Adam with its scheduler, weight decay and
bias correction (mxjax).""",
    ),
    (
        "code",
        """\
data = mx.training.load_digits()
x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)


def loss_fn(params, xb, yb):
    logits = mx.training.mlp_apply(params, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()


sched = mx.lr_scheduler.CosineScheduler(max_update=300, base_lr=0.01, warmup_steps=30)
opt = mx.optimizer.create("adam", learning_rate=None, lr_scheduler=sched, wd=1e-4)
tx = optax.chain(optax.clip_by_global_norm(1.0), to_optax(opt))

params = mx.initializer.init_params(
    mx.initializer.Xavier(), jax.random.key(0), mx.training.mlp_shapes(hidden=32)
)
state = tx.init(params)


@jax.jit
def step(params, state, xb, yb):
    loss, g = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state, loss


losses = []
for i in range(300):
    j = (i * 128) % (len(y) - 128)
    params, state, loss = step(params, state, x[j : j + 128], y[j : j + 128])
    losses.append(float(loss))
acc = mx.training.accuracy(params, data.x_val, data.y_val)
print(f"validation accuracy {float(acc):.3f}")""",
    ),
    (
        "code",
        """\
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
a.plot(losses, lw=0.8)
a.set_yscale("log")
a.set_title("optax.chain(clip_by_global_norm, to_optax(mxjax adam))")
a.set_xlabel("optax count")
b.plot(jax.vmap(to_optax_schedule(sched))(jnp.arange(300)), color="C2")
b.set_title("its CosineScheduler, on optax's count")
b.set_xlabel("optax count");""",
    ),
    (
        "md",
        """\
## A flax `nnx` model with mxjax initializers and an mxjax optimizer""",
    ),
    (
        "code",
        """\
KERNEL = mx.initializer.Xavier(rnd_type="gaussian", magnitude=2, in_axis=-2, out_axis=-1)


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, kernel_init=KERNEL, rngs=rngs)
        self.out = nnx.Linear(32, 10, kernel_init=KERNEL, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


model = MLP(nnx.Rngs(0))
mx_opt = mx.optimizer.create("nadam", learning_rate=0.005, wd=1e-4)
optimizer = nnx.Optimizer(model, to_optax(mx_opt), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, xb, yb):
    def loss(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()

    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value


nnx_losses = []
for i in range(300):
    j = (i * 128) % (len(y) - 128)
    nnx_losses.append(float(train_step(model, optimizer, x[j : j + 128], y[j : j + 128])))
pred = jnp.argmax(model(jnp.asarray(data.x_val)), axis=1)
print(f"nnx + mxjax nadam: validation accuracy {float(jnp.mean(pred == data.y_val)):.3f}")
plt.figure(figsize=(5, 3))
plt.plot(nnx_losses, lw=0.8)
plt.yscale("log")
plt.title("flax nnx MLP, mxjax Xavier + Nadam")
plt.xlabel("update");""",
    ),
]


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        make = (
            nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        )
        nb.cells.append(make(src))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    return nb


def execute(nb: nbformat.NotebookNode, cwd: pathlib.Path, timeout: int = 600) -> None:
    """Run ``nb`` in place in a fresh python3 kernel that imports mxjax from here."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("JAX_PLATFORMS", "cpu")
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)


def main(argv: list[str]) -> None:
    NB_DIR.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        if argv and not any(a in name for a in argv):
            continue
        nb = build(name, cells)
        t = time.perf_counter()
        execute(nb, NB_DIR)
        for cell in nb.cells:  # keep diffs small: no execution timestamps
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, NB_DIR / f"{name}.ipynb")
        print(f"{name}: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
