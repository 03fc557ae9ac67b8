"""The ``mxjax`` command line: every registered optimizer, initializer and scheduler
through ``mxjax train``, ``compare``, ``list``, the bad-option paths, and one real
``python -m mxjax`` process."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import mxjax as mx
from mxjax import cli
from mxjax.optimizer._contract import Common
from tests.helpers import ROOT

SHORT = ["--epochs", "1", "--max-steps", "2", "--out", "none"]
ROW = re.compile(r"^\s+(\d+)\s+([\d.]+|nan)\s+([\d.]+)\s+([\d.]+|nan)\s+(\S+)\s+\S+s$")


def _unique(registry):
    """One registry name per factory (aliases such as ``ones``/``one`` share one)."""
    seen, out = set(), []
    for name in registry.names():
        f = registry.get(name)
        if id(f) not in seen:
            seen.add(id(f))
            out.append(name)
    return out


def train(capsys, *argv):
    rc = cli.main(["train", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def table_rows(out):
    return [m.groups() for line in out.splitlines() if (m := ROW.match(line))]


# ----------------------------------------------------------------------------- parsing


def test_parse_kwargs_values():
    kw = cli.parse_kwargs(
        "learning_rate=0.01,wd=1e-4,step=[100, 200],rnd_type=gaussian,centered=true,"
        "clip_gradient=None,name='a,b'"
    )
    assert kw == {
        "learning_rate": 0.01,
        "wd": 1e-4,
        "step": [100, 200],
        "rnd_type": "gaussian",
        "centered": True,
        "clip_gradient": None,
        "name": "a,b",
    }
    assert cli.parse_kwargs("") == {}


@pytest.mark.parametrize(
    "text, match",
    [
        ("lr", "expected name=value"),
        ("a=1,a=2", "given twice"),
        ("a=", "no value"),
        ("a=[1,2", "unbalanced"),
        ("1a=3", "expected name=value"),
    ],
)
def test_parse_kwargs_errors(text, match):
    with pytest.raises(cli.UsageError, match=match):
        cli.parse_kwargs(text)


def test_split_specs():
    assert cli.split_specs("sgd:momentum=0.9,adam:learning_rate=0.01,wd=0,nadam") == [
        "sgd:momentum=0.9",
        "adam:learning_rate=0.01,wd=0",
        "nadam",
    ]
    assert cli.split_specs("sgd,adam;rmsprop:centered=True") == [
        "sgd",
        "adam",
        "rmsprop:centered=True",
    ]
    assert cli.parse_spec("multifactor:step=[10,20],factor=0.5") == (
        "multifactor",
        {"step": [10, 20], "factor": 0.5},
    )


# ------------------------------------------------------------------------ the seed run


def test_default_train_is_the_seed_and_learns(capsys, tmp_path):
    """``mxjax train`` with no options: the walkthrough, > 90 % on held-out digits."""
    png = tmp_path / "train.png"
    rc, out, err = train(capsys, "--out", str(png))
    assert rc == 0, err
    assert "fc(10) + softmax cross-entropy; batch 128" in out
    assert (
        "sgd(" in out and "learning_rate=0.1" in out and "rescale_grad=0.0078125" in out
    )
    assert "FactorScheduler(step=100, factor=0.9, base_lr=0.1)" in out
    assert "Uniform(scale=1.0)" in out
    header = next(line for line in out.splitlines() if "train acc" in line)
    assert header.split() == [
        "epoch",
        "loss",
        "train",
        "acc",
        "val",
        "acc",
        "lr",
        "time",
    ]
    rows = table_rows(out)
    assert [int(r[0]) for r in rows] == [1, *range(5, 51, 5)]
    losses = [float(r[1]) for r in rows]
    assert losses[-1] < losses[0] / 4
    lrs = [float(r[4]) for r in rows]
    assert lrs[0] == 0.1 and lrs[-1] == pytest.approx(0.1 * 0.9**5, rel=1e-3)
    val = float(re.search(r"validation accuracy ([\d.]+)", out).group(1))
    assert val > 0.9
    assert f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_default_init_follows_mxnet_name_dispatch():
    init = cli.build_initializer(cli.DEFAULT_INIT)
    p = cli.init_model(init, cli.DEFAULT_INIT, hidden=0, seed=0)
    w, b = np.asarray(p["fc"]["weight"]), np.asarray(p["fc"]["bias"])
    assert w.shape == (10, 64) and np.abs(w).max() <= 1.0
    assert w.std() == pytest.approx(1 / np.sqrt(3), rel=0.1)  # U[-1, 1]
    assert (b == 0).all()


def test_default_schedule_is_factor_100_09():
    opt, name, sched = cli.build_optimizer(
        cli.DEFAULT_OPTIMIZER,
        None,
        cli.DEFAULT_SCHEDULER,
        batch_size=128,
        total_steps=600,
    )
    lr = mx.training.lr_schedule(opt)
    assert name == "sgd" and opt.hyperparams["rescale_grad"] == 1 / 128
    got = [float(lr(n)) for n in (1, 100, 101, 200, 201)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.09, 0.09, 0.081], rtol=1e-6)


# ------------------------------------------------------- every registered component


NAN_ON_DIGITS = {"adamax"}
"""Adamax has no epsilon: a weight whose gradient is 0 on the first update (a pixel that
is blank in the whole batch) becomes 0/0 = NaN, as in MXNet [Q24]."""


ONLY_2D = {"groupadagrad"}
"""Optimizers that take only 2-D weights (MXNet's GroupAdaGrad, for embeddings): they
train the model without biases (``--no-bias``) and refuse the 1-D biases cleanly."""


@pytest.mark.parametrize("name", mx.optimizer.names())
def test_every_optimizer_trains(capsys, name):
    no_bias = ["--no-bias"] if name in ONLY_2D else []
    rc, out, err = train(capsys, "--optimizer", name, *no_bias, *SHORT)
    assert rc == 0, err
    assert "Traceback" not in err
    assert out.splitlines()[1].startswith(f"optimizer:    {name}(")
    rows = table_rows(out)
    assert len(rows) == 1 and rows[0][0] == "1"
    assert "2 steps" in out
    if name in NAN_ON_DIGITS:
        assert "loss is not finite from update 2 on" in err
    else:
        assert np.isfinite(float(rows[0][1])) and "warning" not in err


INIT_ARGS = {
    "constant": "value=0.5",
    "fusedrnn": "init=uniform,num_hidden=10,num_layers=1,mode=lstm",
}
NOT_FOR_FC = {"bilinear", "fusedrnn"}
"""Initializers whose weight rule needs another layout than a fully connected layer's
(a 4-D kernel, a packed RNN vector): selecting them must fail cleanly."""


@pytest.mark.parametrize("name", _unique(mx.initializer._create.registry))
def test_every_initializer_selectable(capsys, name):
    spec = f"{name}:{INIT_ARGS[name]}" if name in INIT_ARGS else name
    rc, out, err = train(capsys, "--init", spec, *SHORT)
    assert "Traceback" not in err
    if name in NOT_FOR_FC:
        assert rc == 2
        assert err.count("\n") == 1 and "cannot initialize this model" in err
    else:
        assert rc == 0, err
        assert len(table_rows(out)) == 1
        init = cli.build_initializer(spec)
        assert f"initializer:  {init!r}" in out


@pytest.mark.parametrize("name", _unique(mx.lr_scheduler.registry))
def test_every_scheduler_trains_with_run_length_defaults(capsys, name):
    """Required arguments (``max_update``, ``step``) come from the run's length."""
    rc, out, err = train(
        capsys,
        "--lr-scheduler",
        f"{name}:warmup_steps=2",
        "--epochs",
        "2",
        "--max-steps",
        "20",
        "--out",
        "none",
    )
    assert rc == 0, err
    assert "lr schedule:" in out and "warmup_steps=2" in out
    opt, _, sched = cli.build_optimizer(
        "sgd:learning_rate=0.1",
        None,
        f"{name}:warmup_steps=2",
        batch_size=128,
        total_steps=20,
    )
    assert sched.base_lr == 0.1
    lr = mx.training.lr_schedule(opt)
    assert float(lr(1)) == pytest.approx(0.05)  # linear warmup from 0 to 0.1 in 2 steps
    for arg in ("max_update", "step"):
        if hasattr(sched, arg):
            v = getattr(sched, arg)
            assert v == 20 or v == 2 or list(v) == [10, 15], (arg, v)


def test_scheduler_none_and_explicit_base_lr(capsys):
    opt, _, sched = cli.build_optimizer(
        "adam", None, "none", batch_size=8, total_steps=10
    )
    assert sched is None and float(mx.training.lr_schedule(opt)(5)) == pytest.approx(
        0.001
    )
    # base_lr in the spec and no learning_rate: the scheduler's base_lr is kept
    opt, _, sched = cli.build_optimizer(
        "adam", None, "poly:base_lr=0.02,max_update=10", batch_size=8, total_steps=10
    )
    assert float(mx.training.lr_schedule(opt)(1)) == pytest.approx(sched(1))
    assert sched.base_lr == 0.02
    rc, out, _ = train(capsys, "--lr-scheduler", "none", *SHORT)
    assert rc == 0 and "lr schedule:  constant 0.1" in out


def test_optimizer_params_and_hidden_layer(capsys):
    rc, out, err = train(
        capsys,
        "--optimizer", "adam",
        "--optimizer-params", "learning_rate=0.01,wd=1e-4",
        "--init", "xavier:magnitude=2,rnd_type=gaussian",
        "--lr-scheduler", "cosine:max_update=500",
        "--hidden", "16", "--batch-size", "64", "--seed", "3", *SHORT,
    )  # fmt: skip
    assert rc == 0, err
    assert "fc1(16) -> relu -> fc2(10)" in out and "batch 64" in out
    assert "learning_rate=0.01" in out and "wd=0.0001" in out
    assert "rescale_grad=0.015625" in out
    assert "CosineScheduler(max_update=500, base_lr=0.01)" in out
    assert "Xavier(rnd_type='gaussian', factor_type='avg', magnitude=2)" in out


def test_multifactor_steps_as_a_list(capsys):
    rc, out, err = train(
        capsys,
        "--lr-scheduler",
        "multifactor:step=[1,2],factor=0.5",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--log-every",
        "1",
        "--out",
        "none",
    )
    assert rc == 0, err
    assert float(table_rows(out)[0][4]) == pytest.approx(0.025)  # 0.1 * 0.5 * 0.5


# ---------------------------------------------------------------------- bad options


BAD = [
    (["--optimizer", "nosuch"], "Cannot find optimizer 'nosuch'; valid names are"),
    (["--optimizer-params", "learning_rate=abc"], "learning_rate must be real in"),
    (["--optimizer-params", "learning_rate=-1"], "learning_rate must be real in"),
    (["--optimizer", "sgd:momentum=1.5"], "momentum must be real in"),
    (["--optimizer-params", "lr=0.1"], "optimizer 'sgd' has no argument 'lr'"),
    (["--optimizer-params", "lr"], "expected name=value"),
    (["--optimizer-params", "lr_scheduler=1"], "--lr-scheduler"),
    (["--init", "nosuch"], "Cannot find initializer 'nosuch'"),
    (["--init", "xavier:magnitude=big"], "magnitude must be real in"),
    (["--init", "uniform:sigma=1"], "initializer 'uniform' has no argument 'sigma'"),
    (["--init", "constant"], "needs argument(s) value"),
    (["--lr-scheduler", "nosuch"], "Cannot find lr_scheduler 'nosuch'"),
    (["--lr-scheduler", "cosine:max_update=-5"], "max_update"),
    (["--lr-scheduler", "factor:step=10,factor=2"], "factor"),
    (["--lr-scheduler", "multifactor:step=[5,2]"], "step"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--epochs", "two"], "invalid int value"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--hidden", "-1"], "--hidden must be >= 0"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--no-such-flag"], "unrecognized arguments"),
    # issue 19, item 13
    (["--seed", "-1"], "--seed must be in [0, 2**32 - 1], got -1"),
    (["--seed", str(2**32)], f"--seed must be in [0, 2**32 - 1], got {2**32}"),
    (["--seed", str(10**30)], "--seed must be in"),
    (
        ["--optimizer", "sgd:learning_rate=0.1", "--optimizer-params", "learning_rate=0.2"],
        "learning_rate is given both in --optimizer",
    ),
    (
        ["--optimizer", "adam:wd=0.1", "--optimizer-params", "learning_rate=0.01,wd=0.2"],
        "wd is given both",
    ),
    (["--out", "/nonexistent-dir/plot.png"], "cannot write the plot"),
    (["--out", "/nonexistent-dir/plot"], "'/nonexistent-dir/plot.png'"),
    (["--out", "plot.nosuchformat"], "matplotlib cannot write .nosuchformat"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    rc, out, err = train(capsys, *SHORT, *argv)
    assert rc == 2
    assert err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err and "error:" in err
    assert "epoch" not in out  # nothing was trained


@pytest.mark.parametrize("name", sorted(ONLY_2D & set(mx.optimizer.names())))
def test_2d_only_optimizer_refuses_biases_cleanly(capsys, name):
    rc, out, err = train(capsys, "--optimizer", name, *SHORT)
    assert rc == 2 and err.count("\n") == 1
    assert f"optimizer {name!r} cannot train this model" in err and "--no-bias" in err


def test_bad_command(capsys):
    assert cli.main(["fly"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main(["list", "widgets"]) == 2
    assert cli.main(["compare", "--optimizers", "sgd,nosuch", *SHORT]) == 2
    assert "Cannot find optimizer 'nosuch'" in capsys.readouterr().err


def test_out_without_extension_prints_the_file_written(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = train(capsys, "--epochs", "1", "--max-steps", "1", "--out", "curves")
    assert rc == 0, err
    assert "wrote curves.png" in out and (tmp_path / "curves.png").exists()
    assert not (tmp_path / "curves").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch-size", "100000", "--epochs", "1"],  # one step: no time per step
        ["--val-fraction", "0", "--epochs", "2", "--max-steps", "3"],  # no validation
        ["--batch-size", "100000", "--val-fraction", "0", "--epochs", "1"],
    ],
)
def test_a_run_prints_no_nan_for_what_it_did_not_measure(capsys, argv):
    rc, out, err = train(capsys, *argv, "--out", "none")
    assert rc == 0, err
    assert "nan" not in out.lower(), out
    final = [line for line in out.splitlines() if line.startswith("final:")][0]
    if "--val-fraction" in argv:
        assert "no validation split" in final and "val acc" not in out
    if "100000" in argv:
        assert "1 step in" in final and "ms/step" not in final


def test_an_unwritable_out_is_refused_before_training(capsys, tmp_path):
    (tmp_path / "adir.png").mkdir()
    for out in (tmp_path / "adir.png", tmp_path / "afile.png" / "x.png"):
        (tmp_path / "afile.png").write_bytes(b"")
        rc, stdout, err = train(capsys, "--epochs", "1", "--out", str(out))
        assert rc == 2 and "cannot write the plot" in err, err
        assert not table_rows(stdout) and "final:" not in stdout  # nothing trained


def test_unwritable_plot_is_a_usage_error(capsys, tmp_path):
    rc, _, err = train(
        capsys,
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "missing" / "x.png"),
    )
    assert rc == 2 and "cannot write the plot" in err


# ---------------------------------------------------------------- compare and list


def test_compare(capsys, tmp_path):
    png = tmp_path / "cmp.png"
    rc = cli.main(
        ["compare", "--optimizers", "sgd:learning_rate=0.1,momentum=0.9,adam:"
         "learning_rate=0.01,wd=1e-4", "--optimizers", "nadam",
         "--epochs", "2", "--max-steps", "12", "--out", str(png)]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("optimizer "))
    assert lines[head].split() == [
        "optimizer", "loss", "train", "acc", "val", "acc", "ms/step", "compile"
    ]  # fmt: skip
    body = lines[head + 1 : head + 4]
    assert [r.split()[0] for r in body] == [
        "sgd:learning_rate=0.1,momentum=0.9",
        "adam:learning_rate=0.01,wd=1e-4",
        "nadam",
    ]
    for r in body:
        loss, acc, val, ms = (float(x) for x in r.split()[1:5])
        assert np.isfinite(loss) and 0 <= acc <= 1 and 0 <= val <= 1 and ms > 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_list_shows_every_component_with_defaults(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    entries = set(re.findall(r"^  (\S.*)$", out, re.M))
    listed = {n for e in entries for n in e.split(", ")}
    for name in mx.optimizer.names():
        assert name in listed, name
    for name in mx.initializer._create.registry.names():
        assert name in listed, name
    for name in mx.lr_scheduler.names():
        assert name in listed, name
    common = out.split("arguments every optimizer also takes")[1].split("Initializers")[
        0
    ]
    for key in Common.__annotations__:  # the base arguments, listed once
        assert common.count(f"{key}=") == 1, key
    assert "wd=0.0" in common and "rescale_grad=1.0" in common
    assert "lr_scheduler=" not in out.split("arguments every optimizer")[0]
    adam = inspect.signature(mx.optimizer.adam).parameters
    assert f"beta1={adam['beta1'].default!r}" in out
    assert "value (required)" in out  # Constant
    assert "max_update (required)" in out  # Cosine / Poly
    assert cli.main(["list", "schedulers"]) == 0
    only = capsys.readouterr().out
    assert "Optimizers" not in only and "cosine" in only


# ---------------------------------------------------------------- the real console


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def test_python_m_mxjax_train_subprocess(tmp_path):
    png = tmp_path / "p.png"
    r = subprocess.run(
        [sys.executable, "-m", "mxjax", "train", "--epochs", "2", "--out", str(png)],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(table_rows(r.stdout)) == 2 and png.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "mxjax", "train", "--optimizer", "nosuch"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^mxjax = "mxjax\.cli:run"$', text, re.M)
    assert callable(cli.run)


def test_readme_first_command_runs_mxjax_train():
    text = (ROOT / "README.md").read_text()
    first = re.findall(r"```bash\n(.*?)```", text, re.S)[0]
    assert first.strip() == 'pip install -e ".[cli]" && mxjax train'
    assert "![" in text and "(docs/mxjax-train.png)" in text
    assert (ROOT / "docs" / "mxjax-train.png").read_bytes()[:4] == b"\x89PNG"
    val = re.search(r"\*\*([\d.]+) %\s+validation accuracy\*\*", text)
    assert val and f"validation accuracy {float(val.group(1)) / 100:.4f}" in text
