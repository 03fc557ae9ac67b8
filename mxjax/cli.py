r"""The ``mxjax`` command line: ``mxjax train``, ``mxjax compare``, ``mxjax list``.

``mxjax train`` runs the MXNet walkthrough (the seed) on real data, the bundled UCI
handwritten digits (1,797 8x8 images; 80 % train, 20 % validation): one fully connected
layer ``fc`` of 10 outputs with softmax cross-entropy, batch 128, weights from
``Uniform(scale=1.0)`` through MXNet's name dispatch (``fc_weight`` gets the rule,
``fc_bias`` 0), SGD with ``learning_rate=0.1`` decayed by
``FactorScheduler(step=100, factor=0.9)``.

Gradient scale: as MXNet's ``Module`` (``SoftmaxOutput`` sums the per-sample gradients
and ``init_optimizer`` sets ``rescale_grad = 1/batch_size``), the loss is summed over
the batch and ``rescale_grad`` defaults to ``1/batch_size``; the table shows the mean
cross-entropy per sample.

Specs name a registered optimizer, initializer or scheduler by its MXNet name with
arguments, ``name:arg=value,arg=value``; values are Python literals
(``ast.literal_eval``: ``0.1``, ``[100, 200]``, ``None``, ``True``) or bare words
(``rnd_type=gaussian``).

Exit status: 0 on success, 2 for a bad command line (one line on stderr).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import os
import re
import signal
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import jax
import numpy as np

from . import initializer as _init
from . import lr_scheduler as _sched
from . import optimizer as _opt
from . import training as _tr
from .optimizer._contract import COMMON_DEFAULTS, Common

DEFAULT_OPTIMIZER = "sgd:learning_rate=0.1"
DEFAULT_INIT = "uniform:scale=1.0"
DEFAULT_SCHEDULER = "factor:step=100,factor=0.9"
DEFAULT_COMPARE = (
    "sgd:learning_rate=0.1,sgd:learning_rate=0.1,momentum=0.9,"
    "adam:learning_rate=0.01,nadam:learning_rate=0.01,rmsprop:learning_rate=0.01"
)
_BOOL_WORDS = {"true": True, "false": False, "none": None}


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


_STOP = threading.Event()
"""Set by the SIGINT handler; the run stops at the next safe point (between steps)."""


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C: only set the flag (an exception raised here could land in a callback,
    e.g. JAX's garbage collection, and be swallowed); a second Ctrl-C stops at once."""
    if _STOP.is_set():
        raise KeyboardInterrupt
    _STOP.set()


def _check_stop(where: str) -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt(where)


@contextlib.contextmanager
def _sigint_flag() -> Any:
    """Install :func:`_on_sigint` for the command (main thread only)."""
    _STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------ parsing


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` outside brackets and quotes: ``'a=[1,2],b=3'`` ->
    ``['a=[1,2]', 'b=3']``."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if depth != 0 or quote:
        raise UsageError(f"unbalanced brackets or quotes in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A Python literal (``ast.literal_eval``), ``true``/``false``/``none``, else the
    text itself as a string."""
    text = text.strip()
    if text.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``'learning_rate=0.01,wd=1e-4'`` -> ``{'learning_rate': 0.01, 'wd': 0.0001}``."""
    out: dict[str, Any] = {}
    if not text or not text.strip():
        return out
    for item in split_top_level(text):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise UsageError(f"expected name=value, got {item!r}")
        if name in out:
            raise UsageError(f"argument {name!r} given twice in {text!r}")
        if not value.strip():
            raise UsageError(f"no value for {name!r} in {text!r}")
        out[name] = parse_value(value)
    return out


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``'xavier:magnitude=2'`` -> ``('xavier', {'magnitude': 2})``."""
    name, _, args = text.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"missing name in {text!r}")
    return name, parse_kwargs(args)


def split_specs(text: str) -> list[str]:
    """Split a list of specs: ``'sgd:momentum=0.9,adam:learning_rate=0.01,wd=0,nadam'``
    -> ``['sgd:momentum=0.9', 'adam:learning_rate=0.01,wd=0', 'nadam']``. A comma
    item starts a new spec unless it is ``name=value`` (then it belongs to the previous
    spec); ``;`` always separates specs."""
    specs: list[str] = []
    for chunk in split_top_level(text, ";"):
        for item in split_top_level(chunk):
            if not item:
                continue
            eq, colon = item.find("="), item.find(":")
            starts_new = eq < 0 or (0 <= colon < eq)
            if starts_new or not specs:
                specs.append(item)
            else:
                specs[-1] += "," + item
    if not specs:
        raise UsageError(f"no optimizer in {text!r}")
    return specs


# ----------------------------------------------------------------------------- building


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature
        return inspect.Signature()


def _named_params(sig: inspect.Signature) -> dict[str, inspect.Parameter]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p for n, p in sig.parameters.items() if p.kind in kinds}


def _has_var_kw(sig: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def check_arguments(
    kind: str,
    name: str,
    factory: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    var_kw_names: Sequence[str] = (),
) -> None:
    """Raise UsageError for an argument ``factory`` does not take, or a missing one."""
    sig = _signature(factory)
    named = _named_params(sig)
    if _has_var_kw(sig) and not named:
        return  # a bare **kwargs wrapper (ccsgd): the factory checks for itself
    allowed = set(named) | (set(var_kw_names) if _has_var_kw(sig) else set())
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise UsageError(
            f"{kind} {name!r} has no argument {unknown[0]!r}; its arguments are: "
            + ", ".join(sorted(allowed))
        )
    missing = [
        n
        for n, p in named.items()
        if p.default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        raise UsageError(
            f"{kind} {name!r} needs argument(s) {', '.join(missing)} "
            f"(e.g. {name}:{missing[0]}=...)"
        )


def _lookup(registry: Any, kind: str, name: str) -> Callable[..., Any]:
    try:
        return registry.get(name)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def _call(kind: str, name: str, factory: Callable[..., Any], kwargs: dict) -> Any:
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{kind} {name!r}: {e}") from None


def default_learning_rate(factory: Callable[..., Any]) -> float:
    """The factory's default ``learning_rate`` (MXNet's base default 0.01 when None)."""
    p = _signature(factory).parameters.get("learning_rate")
    if p is None or p.default is inspect.Parameter.empty or p.default is None:
        return 0.01
    return p.default


def build_scheduler(
    spec: str | None, *, base_lr: float | None, total_steps: int
) -> tuple[Any, bool]:
    """The scheduler of ``spec`` (``None`` for ``none``) and whether ``base_lr`` was
    given in the spec. Missing required arguments are filled from the run:
    ``max_update`` = the run's number of updates; ``step`` = a tenth of it (Factor) or
    ``[1/2, 3/4]`` of it (MultiFactor). ``base_lr``, unless given, is the optimizer's
    learning rate (so MXNet's override [Q1] changes nothing)."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None, False
    name, kw = parse_spec(spec)
    factory = _lookup(_sched.registry, "lr_scheduler", name)
    named = _named_params(_signature(factory))
    user_base_lr = "base_lr" in kw
    if base_lr is not None and "base_lr" in named and not user_base_lr:
        kw["base_lr"] = base_lr
    for n, p in named.items():
        if p.default is not inspect.Parameter.empty or n in kw:
            continue
        if n == "max_update":
            kw[n] = max(1, total_steps)
        elif n == "step" and "multi" in getattr(factory, "__name__", name).lower():
            kw[n] = sorted({max(1, total_steps // 2), max(2, 3 * total_steps // 4)})
        elif n == "step":
            kw[n] = max(1, total_steps // 10)
    check_arguments("lr_scheduler", name, factory, kw)
    return _call("lr_scheduler", name, factory, kw), user_base_lr


def build_optimizer(
    spec: str | None,
    extra_params: str | None,
    scheduler_spec: str | None,
    *,
    batch_size: int,
    total_steps: int,
) -> tuple[_opt.Optimizer, str, Any]:
    """``(optimizer, registry name, scheduler or None)`` from the command line.

    ``spec=None`` is the default optimizer, whose arguments ``extra_params`` may
    override; an argument given both in an explicit ``spec`` and in ``extra_params``
    is refused."""
    name, kw = parse_spec(DEFAULT_OPTIMIZER if spec is None else spec)
    for k, v in parse_kwargs(extra_params).items():
        if k in kw and spec is not None:
            raise UsageError(
                f"{k} is given both in --optimizer ({k}={kw[k]!r}) and in "
                f"--optimizer-params ({k}={v!r}); give it once"
            )
        kw[k] = v
    factory = _lookup(_opt.registry, "optimizer", name)
    if "lr_scheduler" in kw:
        raise UsageError("give the schedule with --lr-scheduler, not as an argument")
    check_arguments(
        "optimizer", name, factory, kw, var_kw_names=list(Common.__annotations__)
    )
    kw.setdefault("rescale_grad", 1.0 / batch_size)
    _call("optimizer", name, factory, kw)  # check the optimizer's own arguments first
    lr = kw.get("learning_rate", default_learning_rate(factory))
    sched, user_base_lr = build_scheduler(
        scheduler_spec,
        base_lr=lr if isinstance(lr, (int, float)) else None,
        total_steps=total_steps,
    )
    if sched is not None:
        kw["lr_scheduler"] = sched
        if user_base_lr and "learning_rate" not in kw:
            kw["learning_rate"] = None  # keep the scheduler's base_lr
    return _call("optimizer", name, factory, kw), name, sched


def check_optimizer_fits(opt: _opt.Optimizer, name: str, params: Any) -> None:
    """``opt.init(params)``, with a refusal (GroupAdaGrad's 2-D-only rule) reported
    as a usage error."""
    try:
        jax.eval_shape(opt.init, params)
    except (ValueError, TypeError) as e:
        biases = any(n.endswith("bias") for n in _opt.leaf_names(params))
        hint = " (--no-bias leaves only the 2-D weights)" if biases else ""
        raise UsageError(
            f"optimizer {name!r} cannot train this model: {e}{hint}"
        ) from None


def build_initializer(spec: str) -> _init.Initializer:
    name, kw = parse_spec(spec)
    factory = _lookup(_init._create.registry, "initializer", name)
    check_arguments("initializer", name, factory, kw)
    return _call("initializer", name, factory, kw)


def init_model(init: Any, spec: str, hidden: int, seed: int, bias: bool = True) -> Any:
    try:
        return _init.init_params(
            init, jax.random.key(seed), _tr.mlp_shapes(hidden=hidden, bias=bias)
        )
    except (ValueError, TypeError, NotImplementedError) as e:
        raise UsageError(
            f"initializer {spec!r} cannot initialize this model: {e}"
        ) from None


# ------------------------------------------------------------------------------ running


def short_repr(obj: Any, always: Sequence[str] = ("base_lr",)) -> str:
    """``Class(arg=value, ...)`` with the arguments that differ from the constructor's
    defaults and those in ``always`` (``FactorScheduler(step=100, factor=0.9,
    base_lr=0.1)``)."""
    params = _named_params(_signature(type(obj)))
    shown = []
    for n, p in params.items():
        if not hasattr(obj, n):
            continue
        v = getattr(obj, n)
        if (
            n in always
            or p.default is inspect.Parameter.empty
            or not _same(v, p.default)
        ):
            shown.append(f"{n}={v!r}")
    return f"{type(obj).__name__}({', '.join(shown)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return (
            bool(a == b)
            and type(a) is type(b)
            or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)
        )
    except Exception:  # noqa: BLE001 - arrays and odd objects: show them
        return False


def _lr_text(sched: Any, opt: _opt.Optimizer) -> str:
    if sched is not None:
        return short_repr(sched)
    return f"constant {opt.hyperparams.get('learning_rate', 0.01)}"


def _opt_text(name: str, opt: _opt.Optimizer) -> str:
    hp = {k: v for k, v in opt.hyperparams.items() if k != "lr_scheduler"}
    return name + "(" + ", ".join(f"{k}={v!r}" for k, v in hp.items()) + ")"


COLUMNS = ("epoch", "loss", "train acc", "val acc", "lr", "time")


def _row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "epoch": summary["epoch"],
        "loss": summary["ce"],
        "train acc": summary["acc"],
        "val acc": summary.get("val acc", float("nan")),
        "lr": summary["lr"],
        "time": summary["time"],
    }


def run_one(
    opt: _opt.Optimizer,
    params: Any,
    data: _tr.Split,
    args: argparse.Namespace,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> _tr.FitResult:
    """Train on the digits split with ``args``' batch size, epochs, seed, max steps."""
    x_val, y_val = jax.device_put(data.x_val), jax.device_put(data.y_val)
    eval_fn = (
        (lambda p: {"val acc": _accuracy(p, x_val, y_val)}) if len(data.y_val) else None
    )
    return _tr.fit(
        _tr.softmax_loss,
        params,
        _tr.batch_iterator(data.x_train, data.y_train, args.batch_size, seed=args.seed),
        opt,
        args.epochs,
        has_aux=True,
        eval_fn=eval_fn,
        on_epoch=on_epoch,
        should_stop=_STOP.is_set,
        max_steps=args.max_steps,
        steps_per_epoch=_tr.steps_per_epoch(len(data.y_train), args.batch_size),
    )


_accuracy = jax.jit(_tr.accuracy)


def _prepare(args: argparse.Namespace) -> tuple[_tr.Split, int, Any, Any]:
    """Data, total steps, initializer and initial params (shared by train/compare)."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.hidden < 0:
        raise UsageError(f"--hidden must be >= 0, got {args.hidden}")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1, got {args.max_steps}")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32 - 1], got {args.seed}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    data = _tr.load_digits(args.val_fraction, args.seed)
    if len(data.y_train) == 0:
        raise UsageError("no training data left after the validation split")
    total = args.epochs * _tr.steps_per_epoch(len(data.y_train), args.batch_size)
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    init = build_initializer(args.init)
    params = init_model(init, args.init, args.hidden, args.seed, not args.no_bias)
    return data, total, init, params


def _describe_task(data: _tr.Split, args: argparse.Namespace) -> str:
    model = "fc(10)" if args.hidden == 0 else f"fc1({args.hidden}) -> relu -> fc2(10)"
    if args.no_bias:
        model += " without biases"
    spe = _tr.steps_per_epoch(len(data.y_train), args.batch_size)
    return (
        f"digits: {len(data.y_train)} train / {len(data.y_val)} validation images "
        f"(8x8); model {model} + softmax cross-entropy; batch {args.batch_size} "
        f"({spe} steps/epoch); seed {args.seed}"
    )


def _log_every(args: argparse.Namespace) -> int:
    if args.log_every is not None:
        return max(1, args.log_every)
    return max(1, args.epochs // 10)


def plot_path(out: str | None) -> str | None:
    """The file the plot goes to (``None`` for ``none``), checked before training:
    a name without an extension gets ``.png`` (as matplotlib would add it), the
    format must be one matplotlib writes, and the file must be writable."""
    if not out or out.lower() == "none":
        return None
    path = out if os.path.splitext(out)[1] else out + ".png"
    ext = os.path.splitext(path)[1][1:].lower()
    try:
        from matplotlib.figure import Figure
    except ImportError:  # no plot will be written; _figure says so
        return path
    supported = Figure().canvas.get_supported_filetypes()
    if ext not in supported:
        raise UsageError(
            f"--out {out!r}: matplotlib cannot write .{ext} files; use one of "
            + ", ".join(f".{e}" for e in sorted(supported))
        )
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if os.path.exists(path):
            with open(path, "ab"):  # opened for writing, left unchanged
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
    except OSError as e:
        raise UsageError(f"cannot write the plot {path!r}: {e.strerror or e}") from None
    return path


def cmd_train(args: argparse.Namespace) -> int:
    data, total, init, params = _prepare(args)
    out = plot_path(args.out)
    opt, name, sched = build_optimizer(
        args.optimizer,
        args.optimizer_params,
        args.lr_scheduler,
        batch_size=args.batch_size,
        total_steps=total,
    )
    check_optimizer_fits(opt, name, params)
    _check_stop("before training")
    print(_describe_task(data, args))
    print(f"optimizer:    {_opt_text(name, opt)}")
    print(f"lr schedule:  {_lr_text(sched, opt)}")
    print(f"initializer:  {init!r}")
    print()
    cols = COLUMNS if len(data.y_val) else tuple(c for c in COLUMNS if c != "val acc")
    print(_tr._fit.format_header(cols))
    every = _log_every(args)
    printed: list[int] = []

    def on_epoch(summary: dict[str, Any]) -> None:
        e = summary["epoch"]
        if e == 1 or e % every == 0 or e == args.epochs:
            print(_tr._fit.format_row(_row(summary), cols), flush=True)
            printed.append(e)

    _, _, history = run_one(opt, params, data, args, on_epoch)
    _check_stop(f"after training ({history.steps} updates), before the summary")
    _warn_nonfinite(history, name)
    final = history.epochs[-1]
    if not printed or printed[-1] != final["epoch"]:  # a run cut by --max-steps
        print(_tr._fit.format_row(_row(final), cols))
    print()
    print("final: " + _final_text(history))
    if out is not None and plot_train(
        history, out, title=f"{_opt_text(name, opt)}\n{_lr_text(sched, opt)}; {init!r}"
    ):
        print(f"wrote {out}")
    return 0


def _final_text(history: _tr.History) -> str:
    """The summary line; parts that do not exist for this run (no validation split,
    a single step) are left out rather than printed as NaN."""
    final = history.epochs[-1]
    acc = f"train accuracy {final['acc']:.4f} (last epoch)"
    if "val acc" in final:
        acc = f"validation accuracy {final['val acc']:.4f}, {acc}"
    else:
        acc += ", no validation split"
    timing = f"{history.first_step_time:.2f} s first step"
    if history.steps > 1:
        timing += f", {1e3 * history.step_time:.3f} ms/step after"
    return (
        f"{acc}, {history.steps} step{'s' if history.steps != 1 else ''} in "
        f"{history.total_time:.2f} s ({timing})"
    )


def _warn_nonfinite(history: _tr.History, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(history.loss))
    if bad.size:
        print(
            f"mxjax: warning: the loss is not finite from update {bad[0] + 1} on "
            f"({name}'s update produced NaN/inf weights; try a smaller learning_rate "
            "or clip_gradient)",
            file=sys.stderr,
        )


def cmd_compare(args: argparse.Namespace) -> int:
    data, total, init, params = _prepare(args)
    out = plot_path(args.out)
    specs = [s for text in args.optimizers for s in split_specs(text)]
    runs = []
    for spec in specs:
        opt, name, sched = build_optimizer(
            spec, None, args.lr_scheduler, batch_size=args.batch_size, total_steps=total
        )
        check_optimizer_fits(opt, name, params)
        runs.append((spec, opt))
    print(_describe_task(data, args))
    print(f"lr schedule:  {args.lr_scheduler}; initializer: {init!r}")
    print()
    cols = ("optimizer", "loss", "train acc", "val acc", "ms/step", "compile")
    width = max(len(s) for s, _ in runs)
    print(f"{'optimizer'.ljust(width)}  " + "  ".join(c.rjust(10) for c in cols[1:]))
    results = []
    _check_stop("before training")
    for spec, opt in runs:
        try:
            _, _, h = run_one(opt, params, data, args)
        except _tr.Interrupted as e:
            raise KeyboardInterrupt(f"training {spec}: {e}") from None
        _warn_nonfinite(h, spec)
        results.append((spec, h))
        e = h.epochs[-1]
        cells = [
            f"{e['ce']:.4f}",
            f"{e['acc']:.4f}",
            f"{e['val acc']:.4f}" if "val acc" in e else "-",
            f"{1e3 * h.step_time:.3f}" if h.steps > 1 else "-",
            f"{h.first_step_time:.2f}s",
        ]
        print(
            f"{spec.ljust(width)}  " + "  ".join(c.rjust(10) for c in cells), flush=True
        )
    if out is not None and plot_compare(results, out):
        print(f"wrote {out}")
    return 0


def _format_default(p: inspect.Parameter) -> str:
    if p.default is inspect.Parameter.empty:
        return f"{p.name} (required)"
    return f"{p.name}={p.default!r}"


def _entries(registry: Any) -> list[tuple[list[str], Callable[..., Any]]]:
    groups: dict[int, tuple[list[str], Callable[..., Any]]] = {}
    for n in registry.names():
        f = registry.get(n)
        groups.setdefault(id(f), ([], f))[0].append(n)
    return sorted(groups.values(), key=lambda g: g[0][0])


def _doc_summary(f: Callable[..., Any]) -> str:
    """The docstring's first paragraph, without reST markup."""
    doc = (inspect.getdoc(f) or "").strip().split("\n\n")[0]
    doc = re.sub(r":\w+:`~?([^`]*)`", r"\1", " ".join(doc.split()))
    return doc.replace("``", "")


def _describe_factory(names: list[str], f: Callable[..., Any]) -> str:
    sig = _signature(f)
    parts = [_format_default(p) for p in _named_params(sig).values()]
    if _has_var_kw(sig) and not parts:
        parts = ["**kwargs"]
    lines = [f"  {', '.join(names)}"]
    wrap = dict(width=88, initial_indent=" " * 6, subsequent_indent=" " * 8)
    lines += textwrap.wrap(", ".join(parts) if parts else "(no arguments)", **wrap)
    summary = _doc_summary(f)
    if summary:
        lines += textwrap.wrap(summary, **wrap)
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    all_kinds = ["optimizers", "initializers", "schedulers"]
    bad = [k for k in args.kinds if k not in all_kinds]
    if bad:
        raise UsageError(f"cannot list {bad[0]!r}; choose from {', '.join(all_kinds)}")
    kinds = args.kinds or all_kinds
    out = []
    if "optimizers" in kinds:
        out.append("Optimizers (--optimizer NAME --optimizer-params ARG=VALUE,...):")
        for names, f in _entries(_opt.registry):
            out.append(_describe_factory(names, f))
        out.append("  arguments every optimizer also takes (MXNet's base Optimizer):")
        common = ", ".join(
            f"{k}={COMMON_DEFAULTS[k]!r}" if k in COMMON_DEFAULTS else k
            for k in Common.__annotations__
        )
        out += textwrap.wrap(
            common, width=88, initial_indent=" " * 6, subsequent_indent=" " * 8
        )
    if "initializers" in kinds:
        out.append("Initializers (--init NAME:ARG=VALUE,...):")
        for names, f in _entries(_init._create.registry):
            out.append(_describe_factory(names, f))
    if "schedulers" in kinds:
        out.append(
            "Learning-rate schedulers (--lr-scheduler NAME:ARG=VALUE,... | none):"
        )
        for names, f in _entries(_sched.registry):
            out.append(_describe_factory(names, f))
        out.append(
            "  (train and compare fill a missing max_update with the run's length,"
            " step with a tenth of it)"
        )
    print("\n".join(out))
    return 0


# ------------------------------------------------------------------------------- plots


def _figure(rows: int, cols: int, size: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "mxjax: note: matplotlib is not installed (pip install 'mxjax[cli]'); "
            "no plot written",
            file=sys.stderr,
        )
        return None
    return Figure(figsize=size, layout="constrained")


def _epoch_ends(history: _tr.History) -> np.ndarray:
    return np.cumsum([e["steps"] for e in history.epochs])


def plot_train(history: _tr.History, path: str, title: str = "") -> bool:
    """Loss (per step and per epoch), validation accuracy and learning rate curves."""
    fig = _figure(1, 2, (10, 3.8))
    if fig is None:
        return False
    ax1, ax2 = fig.subplots(1, 2)
    steps = np.arange(1, history.steps + 1)
    ce = history.metrics["ce"]
    ax1.plot(steps, ce, lw=0.6, alpha=0.4, color="C0", label="loss (batch)")
    ax1.plot(
        _epoch_ends(history),
        [e["ce"] for e in history.epochs],
        color="C0",
        label="loss (epoch mean)",
    )
    ax1.set_xlabel("update (num_update)")
    ax1.set_ylabel("cross-entropy per sample")
    ax1.set_yscale("log")
    if "val acc" in history.epochs[0]:
        acc = ax1.twinx()
        acc.plot(
            _epoch_ends(history),
            [e["val acc"] for e in history.epochs],
            color="C1",
            label="validation accuracy",
        )
        acc.set_ylabel("validation accuracy")
        acc.set_ylim(0, 1)
        lines = ax1.get_lines() + acc.get_lines()
        ax1.legend(lines, [ln.get_label() for ln in lines], loc="center right")
    else:
        ax1.legend()
    ax1.set_title("loss")
    ax2.plot(steps, history.lr, color="C2")
    ax2.set_xlabel("update (num_update)")
    ax2.set_ylabel("learning rate")
    ax2.set_ylim(bottom=0)
    ax2.set_title("learning rate")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


def plot_compare(results: list[tuple[str, _tr.History]], path: str) -> bool:
    """Epoch-mean loss and validation accuracy of several runs."""
    fig = _figure(1, 2, (11, 4))
    if fig is None:
        return False
    ax1, ax2 = fig.subplots(1, 2)
    for label, h in results:
        ends = _epoch_ends(h)
        ax1.plot(ends, [e["ce"] for e in h.epochs], label=label)
        if "val acc" in h.epochs[0]:
            ax2.plot(ends, [e["val acc"] for e in h.epochs], label=label)
    ax1.set_yscale("log")
    ax1.set_xlabel("update")
    ax1.set_ylabel("cross-entropy per sample (epoch mean)")
    ax1.set_title("training loss")
    ax2.set_xlabel("update")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("validation accuracy")
    ax1.legend(fontsize="small")
    return _save(fig, path)


def _save(fig: Any, path: str) -> bool:
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write the plot {path!r}: {e}") from None
    return True


# -------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument(
        "--init",
        default=DEFAULT_INIT,
        metavar="NAME[:ARG=VALUE,...]",
        help=f"weight initializer (default {DEFAULT_INIT}); biases get 0 by MXNet's "
        "name dispatch",
    )
    p.add_argument(
        "--lr-scheduler",
        default=DEFAULT_SCHEDULER,
        metavar="NAME[:ARG=VALUE,...]|none",
        help=f"learning-rate schedule (default {DEFAULT_SCHEDULER}); base_lr defaults "
        "to the optimizer's learning_rate, max_update to the run's length",
    )
    p.add_argument("--epochs", type=int, default=50, help="passes over the data (50)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    p.add_argument(
        "--hidden", type=int, default=0, help="units of a ReLU hidden layer (0: none)"
    )
    p.add_argument(
        "--no-bias",
        action="store_true",
        help="fully connected layers without biases (MXNet's no_bias=True)",
    )
    p.add_argument("--seed", type=int, default=0, help="initialization, split, shuffle")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="fraction of the digits held out for validation (0.2)",
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many updates"
    )
    p.add_argument(
        "--out", default=out, metavar="PNG", help=f"plot file, or none ({out})"
    )


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mxjax",
        description="Train with MXNet's optimizers, initializers and lr schedulers "
        "in JAX, on the bundled handwritten digits.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,compare,list}")
    sub.required = True
    t = sub.add_parser(
        "train",
        help="the MXNet walkthrough: fc(10) + softmax, Uniform(1), SGD 0.1 + Factor",
        description="Train the seed's model on the digits; prints a per-epoch table "
        "and writes a PNG of the loss and learning-rate curves.",
    )
    t.add_argument(
        "--optimizer",
        default=None,
        metavar="NAME[:ARG=VALUE,...]",
        help=f"registered optimizer (default {DEFAULT_OPTIMIZER}); rescale_grad "
        "defaults to 1/batch_size",
    )
    t.add_argument(
        "--optimizer-params",
        default=None,
        metavar="ARG=VALUE,...",
        help="optimizer arguments, e.g. learning_rate=0.01,wd=1e-4",
    )
    t.add_argument(
        "--log-every",
        type=int,
        default=None,
        help="print every N-th epoch (default: a tenth of the epochs)",
    )
    _common_options(t, "mxjax-train.png")
    t.set_defaults(func=cmd_train)
    c = sub.add_parser(
        "compare",
        help="several optimizers on the same task and seed",
        description="Train one model per optimizer from the same initial weights; "
        "prints final accuracy and time per step and plots the loss curves.",
    )
    c.add_argument(
        "--optimizers",
        action="append",
        metavar="SPEC,...",
        help="optimizers with arguments, e.g. sgd,adam:learning_rate=0.01,wd=1e-4,"
        "nadam (an ARG=VALUE item belongs to the optimizer before it; repeatable) "
        f"(default {DEFAULT_COMPARE})",
    )
    _common_options(c, "mxjax-compare.png")
    c.set_defaults(func=cmd_compare)
    ls = sub.add_parser(
        "list",
        help="registered optimizers, initializers and schedulers with their arguments",
    )
    ls.add_argument(
        "kinds",
        nargs="*",
        metavar="{optimizers,initializers,schedulers}",
        help="what to list (default: all)",
    )
    ls.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a bad command line)."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or argparse's own errors
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if getattr(args, "command", None) == "compare" and not args.optimizers:
        args.optimizers = [DEFAULT_COMPARE]
    with warnings.catch_warnings(), _sigint_flag():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except UsageError as e:
            print(f"mxjax {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            where = f" ({e})" if str(e) else ""
            print(f"mxjax {args.command}: interrupted{where}", file=sys.stderr, flush=True)
            return 130
        except BrokenPipeError:  # `mxjax list | head`: stop quietly (Python's docs)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    print(f"mxjax: warning: {first}", file=sys.stderr)


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
