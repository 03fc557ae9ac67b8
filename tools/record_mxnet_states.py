"""Record MXNet 1.9.1 ``.states`` files and MXNet's own continuation after loading them.

Run by hand, in a venv with MXNet (never a dependency of mxjax)::

    /work/mxref/bin/python tools/record_mxnet_states.py
    /work/mxref2/bin/python tools/record_mxnet_states.py --mxnet2   # MXNet 2.0.0b1


For each case it trains a small two-layer model for ``WARM`` steps, saves the optimizer
state the way users do (``Module.save_checkpoint(..., save_optimizer_states=True)`` or
``gluon.Trainer.save_states``), then builds a *fresh* Module/Trainer, loads the
checkpoint (``load_optimizer_states`` / ``load_states``) and continues ``CONT`` steps,
recording the gradient MXNet computed and the weights after every continued step.
The Module's symbol declares ``fc2`` before ``fc1``, so its index order
(``fc2_weight, fc2_bias, fc1_weight, fc1_bias``) is not the alphabetical one.

Output in ``tests/reference/states/``: ``<case>.states`` (and ``<case>-symbol.json``
for Module cases), ``<case>.npz`` (``w0/<name>``: the weights at the save,
``g<k>/<name>``, ``w<k>/<name>``: gradient and weights of continued step ``k``), and
``cases.json`` (kind, optimizer, arguments, ``begin_num_update``, dtype). In the
``*_frozen`` cases ``fc2_bias`` is frozen (``fixed_param_names`` / ``grad_req='null'``):
it has no state in the file, no gradient and keeps its value.
With ``--mxnet2`` it writes one MXNet 2.0 Trainer file, ``mxnet2_trainer_adam.states``
(mxjax refuses those by name). With ``--from-mxjax`` MXNet loads the file mxjax wrote
(``tests/migration/written.py``) and continues it: ``mxjax_written_mxnet.npz``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

WARM, CONT = 3, 5
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "reference", "states")

# (case, kind, optimizer, kwargs, scheduler, dtype)
CASES = [
    ("module_sgd", "module", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, None, "float32"),
    ("module_adam", "module", "adam", {"learning_rate": 0.05}, None, "float32"),
    ("module_nadam", "module", "nadam", {"learning_rate": 0.05}, None, "float32"),
    ("module_rmsprop", "module", "rmsprop", {"learning_rate": 0.01, "centered": True}, None, "float32"),
    ("module_adagrad", "module", "adagrad", {"learning_rate": 0.1}, None, "float32"),
    ("module_adadelta", "module", "adadelta", {}, None, "float32"),
    ("module_adamax", "module", "adamax", {"learning_rate": 0.05}, None, "float32"),
    ("module_ftml", "module", "ftml", {"learning_rate": 0.05}, None, "float32"),
    ("module_nag", "module", "nag", {"learning_rate": 0.1, "momentum": 0.9}, None, "float32"),
    ("module_sgd_factor", "module", "sgd", {"learning_rate": 0.1, "momentum": 0.5},
     ("FactorScheduler", {"step": 2, "factor": 0.5}), "float32"),
    ("trainer_sgd", "trainer", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, None, "float32"),
    ("trainer_adam", "trainer", "adam", {"learning_rate": 0.05, "clip_gradient": 0.5}, None, "float32"),
    ("trainer_nadam", "trainer", "nadam", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_rmsprop", "trainer", "rmsprop", {"learning_rate": 0.01}, None, "float32"),
    ("trainer_adagrad", "trainer", "adagrad", {"learning_rate": 0.1}, None, "float32"),
    ("trainer_adadelta", "trainer", "adadelta", {}, None, "float32"),
    ("trainer_signum", "trainer", "signum", {"learning_rate": 0.01}, None, "float32"),
    ("trainer_ftrl", "trainer", "ftrl", {"learning_rate": 0.1}, None, "float32"),
    ("trainer_lamb", "trainer", "lamb", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_dcasgd", "trainer", "dcasgd", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_sgd_factor", "trainer", "sgd", {"momentum": 0.9},
     ("FactorScheduler", {"step": 2, "factor": 0.5, "base_lr": 0.2}), "float32"),
    ("module_adam_frozen", "module", "adam", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_adam_frozen", "trainer", "adam", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_sgd_fp16", "trainer", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "multi_precision": True}, None, "float16"),
    ("trainer_adam_fp16", "trainer", "adam", {"learning_rate": 0.05, "multi_precision": True}, None, "float16"),
    ("trainer_adagrad_eps", "trainer", "adagrad", {"learning_rate": 0.1, "eps": 0.01}, None, "float32"),
    ("trainer_lars", "trainer", "lars", {"learning_rate": 0.1, "momentum": 0.9}, None, "float32"),
    ("trainer_nag", "trainer", "nag", {"learning_rate": 0.1, "momentum": 0.9}, None, "float32"),
    ("trainer_ftml", "trainer", "ftml", {"learning_rate": 0.05}, None, "float32"),
    ("trainer_sgd_multifactor", "trainer", "sgd", {"momentum": 0.5},
     ("MultiFactorScheduler", {"step": [2, 4, 6], "factor": 0.5, "base_lr": 0.2}), "float32"),
    ("trainer_adam_poly", "trainer", "adam", {"learning_rate": None},
     ("PolyScheduler", {"max_update": 12, "base_lr": 0.05, "pwr": 2, "warmup_steps": 2}), "float32"),
    ("trainer_adam_cosine", "trainer", "adam", {"learning_rate": None},
     ("CosineScheduler", {"max_update": 12, "base_lr": 0.05, "final_lr": 0.001}), "float32"),
    # two devices: Module updates on its kvstore, whose states are keyed by *name*
    ("module_adam_2dev", "module", "adam", {"learning_rate": 0.05}, None, "float32"),
    ("module_sgd_bn", "module", "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, None, "float32"),
]


def batches(seed: int, n: int):
    rs = np.random.RandomState(seed)
    return [(rs.randn(4, 5).astype(np.float32), rs.randn(4, 2).astype(np.float32)) for _ in range(n)]


def symbol(mx, batchnorm=False):
    data, label = mx.sym.Variable("data"), mx.sym.Variable("softmax_label")
    h = mx.sym.FullyConnected(data, name="fc2", num_hidden=3)
    if batchnorm:  # gamma/beta are arguments, moving_mean/var auxiliary states
        h = mx.sym.BatchNorm(h, name="bn", fix_gamma=False)
    h = mx.sym.Activation(h, act_type="tanh")
    out = mx.sym.FullyConnected(h, name="fc1", num_hidden=2)
    return mx.sym.LinearRegressionOutput(out, label, name="lro")


def optimizer_params(mx, kwargs, sched):
    kw = {k: v for k, v in kwargs.items() if v is not None}  # None: the scheduler's lr
    if sched:
        kw["lr_scheduler"] = getattr(mx.lr_scheduler, sched[0])(**sched[1])
    return kw


def module_case(mx, case, opt, kwargs, sched, data):
    prefix = os.path.join(OUT, case)

    fixed = ["fc2_bias"] if case.endswith("_frozen") else None

    ctx = [mx.cpu(0), mx.cpu(1)] if case.endswith("_2dev") else mx.cpu()

    def make():
        mod = mx.mod.Module(symbol(mx, case.endswith("_bn")), context=ctx,
                            fixed_param_names=fixed)
        mod.bind(data_shapes=[("data", (4, 5))], label_shapes=[("softmax_label", (4, 2))])
        return mod

    mod = make()
    mod.init_params(mx.init.Uniform(0.5))
    mod.init_optimizer(optimizer=opt, optimizer_params=optimizer_params(mx, kwargs, sched))
    for x, y in data[:WARM]:
        mod.forward_backward(mx.io.DataBatch([mx.nd.array(x)], [mx.nd.array(y)]))
        mod.update()
    mod.save_checkpoint(prefix, 0, save_optimizer_states=True)
    os.replace(prefix + "-0000.states", prefix + ".states")
    os.remove(prefix + "-0000.params")
    arg, aux = mod.get_params()
    rec = {f"w0/{n}": v.asnumpy() for n, v in arg.items()}

    mod = make()  # resume: MXNet's own continuation
    mod.set_params(arg, aux)
    mod.init_optimizer(
        optimizer=opt,
        optimizer_params={**optimizer_params(mx, kwargs, sched), "begin_num_update": WARM},
    )
    mod.load_optimizer_states(prefix + ".states")
    names = mod._exec_group.param_names
    for k, (x, y) in enumerate(data[WARM:], 1):
        mod.forward_backward(mx.io.DataBatch([mx.nd.array(x)], [mx.nd.array(y)]))
        for n, g in zip(names, mod._exec_group.grad_arrays):
            if g[0] is not None:  # the devices' gradients are summed by the kvstore
                rec[f"g{k}/{n}"] = sum(x.asnumpy() for x in g)
        mod.update()
        for n, v in mod.get_params()[0].items():
            rec[f"w{k}/{n}"] = v.asnumpy()
    return rec, names


def trainer_case(mx, case, opt, kwargs, sched, dtype, data):
    from mxnet import autograd, gluon

    fname = os.path.join(OUT, case + ".states")

    def make():
        net = gluon.nn.HybridSequential(prefix="")
        with net.name_scope():
            net.add(gluon.nn.Dense(3, in_units=5, activation="tanh", prefix="fc2_"))
            net.add(gluon.nn.Dense(2, in_units=3, prefix="fc1_"))
        net.initialize(mx.init.Uniform(0.5))
        net.cast(dtype)
        if case.endswith("_frozen"):  # a frozen parameter: no state in the file
            net.collect_params()["fc2_bias"].grad_req = "null"
        return net

    def step(net, trainer, x, y, rec=None, k=0):
        if dtype == "float16":  # MXNet's CPU FullyConnected has no float16: given grads
            rs = np.random.RandomState(int(abs(x[0, 0]) * 1e6))
            for p in net.collect_params().values():
                p.grad()[:] = rs.randn(*p.shape).astype(dtype)
                p.data()._fresh_grad = True  # as backward() marks it
        else:
            with autograd.record():
                loss = ((net(mx.nd.array(x)) - mx.nd.array(y)) ** 2).sum()
            loss.backward()
        if rec is not None:
            for n, p in net.collect_params().items():
                if p.grad_req != "null":
                    rec[f"g{k}/{n}"] = p.grad().asnumpy()
        trainer.step(4)

    return save_and_continue(gluon, make, step, opt, lambda: optimizer_params(mx, kwargs, sched), fname, data)


def save_and_continue(gluon, make, step, opt, params, fname, data):
    """Train WARM steps, ``Trainer.save_states``; a fresh net and Trainer load the file
    and continue CONT steps, recording gradients and weights."""
    net = make()
    trainer = gluon.Trainer(net.collect_params(), opt, params())
    for x, y in data[:WARM]:
        step(net, trainer, x, y)
    trainer.save_states(fname)
    saved = {n: p.data().copy() for n, p in net.collect_params().items()}
    rec = {f"w0/{n}": v.asnumpy() for n, v in saved.items()}

    net = make()  # resume: MXNet's own continuation
    for n, p in net.collect_params().items():
        p.set_data(saved[n])
    trainer = gluon.Trainer(net.collect_params(), opt, params())
    trainer.load_states(fname)
    for k, (x, y) in enumerate(data[WARM:], 1):
        step(net, trainer, x, y, rec, k)
        for n, p in net.collect_params().items():
            rec[f"w{k}/{n}"] = p.data().asnumpy()
    return rec, sorted(net.collect_params().keys())


MXNET2_CASES = [
    ("mxnet2_trainer_adamw", "adamw", {"learning_rate": 0.05, "wd": 0.01}),
    ("mxnet2_trainer_adabelief", "adabelief", {"learning_rate": 0.05}),
    ("mxnet2_trainer_lans", "lans", {"learning_rate": 0.05}),
]


def mxnet2_trainer(mx, case, opt, kwargs, data) -> tuple[dict, list[str]]:
    """trainer_case for MXNet 2.0's Gluon (parameters named ``0.weight``, ...)."""
    from mxnet import autograd, gluon

    fname = os.path.join(OUT, case + ".states")

    def make():
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(3, in_units=5, activation="tanh"), gluon.nn.Dense(2, in_units=3))
        net.initialize(mx.init.Uniform(0.5))
        return net

    def step(net, trainer, x, y, rec=None, k=0):
        with autograd.record():
            loss = ((net(mx.np.array(x)) - mx.np.array(y)) ** 2).sum()
        loss.backward()
        if rec is not None:
            for n, p in net.collect_params().items():
                rec[f"g{k}/{n}"] = p.grad().asnumpy()
        trainer.step(4)

    return save_and_continue(gluon, make, step, opt, lambda: dict(kwargs), fname, data)


def mxnet2_file(mx) -> None:
    from mxnet import autograd, gluon

    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with autograd.record():
        loss = net(mx.np.ones((2, 3))).sum()
    loss.backward()
    trainer.step(1)
    trainer.save_states(os.path.join(OUT, "mxnet2_trainer_adam.states"))
    meta = {}
    for i, (case, opt, kwargs) in enumerate(MXNET2_CASES):
        mx.random.seed(200 + i)
        rec, order = mxnet2_trainer(mx, case, opt, kwargs, batches(200 + i, WARM + CONT))
        np.savez_compressed(os.path.join(OUT, case + ".npz"), **rec)
        meta[case] = dict(
            kind="trainer", optimizer=opt, kwargs=kwargs, scheduler=None, dtype="float32",
            begin_num_update=WARM, steps=CONT, order=order, mxnet=mx.__version__,
        )
    with open(os.path.join(OUT, "cases_mxnet2.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def from_mxjax(mx) -> None:
    """MXNet loads mxjax's ``mxjax_written.states`` (tests/migration/written.py) into its
    Updater and continues; the weights are saved to ``mxjax_written_mxnet.npz``."""
    data = np.load(os.path.join(OUT, "mxjax_written_inputs.npz"))
    warm, cont, n = 3, 5, 2
    opt = mx.optimizer.create("adam", learning_rate=0.05, multi_precision=True,
                              begin_num_update=warm)
    updater = mx.optimizer.get_updater(opt)
    with open(os.path.join(OUT, "mxjax_written.states"), "rb") as f:
        updater.set_states(f.read())
    w = [mx.nd.array(data[f"w{warm}/{i}"], dtype=data[f"w{warm}/{i}"].dtype) for i in range(n)]
    rec = {}
    for k in range(1, cont + 1):
        for i in range(n):
            g = data[f"g{warm + k}/{i}"]
            updater(i, mx.nd.array(g, dtype=g.dtype), w[i])
            rec[f"w{k}/{i}"] = w[i].asnumpy()
    np.savez(os.path.join(OUT, "mxjax_written_mxnet.npz"), **rec)


def main() -> None:
    import mxnet as mx

    if "--mxnet2" in sys.argv:
        return mxnet2_file(mx)
    if "--from-mxjax" in sys.argv:
        return from_mxjax(mx)

    os.makedirs(OUT, exist_ok=True)
    meta = {}
    for i, (case, kind, opt, kwargs, sched, dtype) in enumerate(CASES):
        mx.random.seed(100 + i)
        np.random.seed(100 + i)
        data = batches(100 + i, WARM + CONT)
        if kind == "module":
            rec, order = module_case(mx, case, opt, kwargs, sched, data)
        else:
            rec, order = trainer_case(mx, case, opt, kwargs, sched, dtype, data)
        np.savez_compressed(os.path.join(OUT, case + ".npz"), **rec)
        meta[case] = dict(
            kind=kind, optimizer=opt, kwargs=kwargs, scheduler=sched, dtype=dtype,
            begin_num_update=WARM, steps=CONT, order=order, mxnet=mx.__version__,
        )
        print(case, "ok", file=sys.stderr)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
