"""``fit``: MXNet's ``Module.fit`` as a small loop around one jitted, donated step."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Params, PyTree, Schedule
from ..optimizer import Optimizer, layout_of
from ..optimizer._learning_rate import resolve_learning_rate

PROGRESS_MIN_STEPS = 1000
"""``progress=None`` shows a bar only on a TTY, for runs of at least this many steps."""


class Interrupted(KeyboardInterrupt):
    """:func:`fit` was stopped (Ctrl-C, or its ``should_stop``): where it stopped.

    Attributes:
      epoch: the epoch under way (1-based).
      steps: the updates completed.
    """

    def __init__(self, epoch: int, steps: int) -> None:
        super().__init__(f"stopped in epoch {epoch} after {steps} updates")
        self.epoch, self.steps = epoch, steps


def lr_schedule(optimizer: Optimizer) -> Schedule:
    """The optimizer's learning rate as a ``num_update -> lr`` function.

    Built from ``optimizer.hyperparams`` (``learning_rate`` and ``lr_scheduler``) with
    MXNet's rule [Q1] (the optimizer's ``learning_rate`` overrides the scheduler's
    ``base_lr``) and the rule's ``count_offset``, so ``lr_schedule(opt)(state.count)``
    after an update is the rate that update used (``state.count`` is MXNet's
    ``num_update``, 1 after the first update). Optimizers whose rate is unknown (built
    from bare ``init``/``update`` functions without hyperparams) give NaN.

    >>> import mxjax as mx
    >>> sched = mx.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.1)
    >>> opt = mx.optimizer.create("sgd", learning_rate=0.1, lr_scheduler=sched)
    >>> [round(float(mx.training.lr_schedule(opt)(n)), 4) for n in (1, 2, 3)]
    [0.1, 0.1, 0.05]
    """
    hp = optimizer.hyperparams
    if optimizer.rule is None and not {"learning_rate", "lr_scheduler"} & set(hp):
        return lambda num_update: jnp.full((), jnp.nan, jnp.float32)
    with warnings.catch_warnings():  # the optimizer already warned when it was built
        warnings.simplefilter("ignore")
        rate, _ = resolve_learning_rate(hp.get("learning_rate"), hp.get("lr_scheduler"))
    offset = optimizer.rule.count_offset if optimizer.rule is not None else 0

    def schedule(num_update: Any) -> jax.Array:
        if callable(rate):
            return jnp.asarray(rate(jnp.asarray(num_update) + offset), jnp.float32)
        return jnp.asarray(rate, jnp.float32)

    return schedule


def learning_rate_at(optimizer: Optimizer, num_update: Any) -> jax.Array:
    """The rate ``optimizer`` uses on update number ``num_update`` (1-based)."""
    return lr_schedule(optimizer)(num_update)


@dataclasses.dataclass
class History:
    """What :func:`fit` recorded.

    Attributes:
      loss: the loss of every step (before that step's update), shape ``(steps,)``.
      lr: the learning rate every step used, from :func:`lr_schedule`.
      metrics: ``name -> per-step values`` of the loss function's aux metrics.
      epochs: one dict per epoch: ``epoch`` (1-based), ``steps``, ``loss`` (mean over
        the epoch), each metric's mean, ``lr`` (of the epoch's last step), ``time``
        (seconds, the first epoch includes compilation) and what ``eval_fn`` returned.
      first_step_time: seconds of the first step (tracing, compiling and running it).
    """

    loss: np.ndarray
    lr: np.ndarray
    metrics: dict[str, np.ndarray]
    epochs: list[dict[str, float]]
    first_step_time: float

    @property
    def steps(self) -> int:
        """The number of steps taken."""
        return int(self.loss.shape[0])

    @property
    def metric(self) -> np.ndarray | None:
        """The first metric's per-step values (``None`` without metrics)."""
        return next(iter(self.metrics.values()), None)

    @property
    def total_time(self) -> float:
        """Seconds spent in all epochs."""
        return float(sum(e["time"] for e in self.epochs))

    @property
    def step_time(self) -> float:
        """Mean seconds per step after the first (compiled) one; NaN with one step."""
        if self.steps < 2:
            return math.nan
        return (self.total_time - self.first_step_time) / (self.steps - 1)

    def table(self, columns: Iterable[str] | None = None) -> str:
        """The epoch summaries as an aligned text table."""
        return format_table(self.epochs, columns)


class FitResult(NamedTuple):
    """``params, state, history = fit(...)``."""

    params: Params
    state: PyTree
    history: History


def format_row(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    """One table row; floats are shown with 4 significant digits, times as seconds."""
    cells = []
    for c in columns:
        v = row.get(c, "")
        if c == "time" and isinstance(v, float):
            s = f"{v:.3f}s"
        elif isinstance(v, float) and c == "lr":
            s = f"{v:.4g}"
        elif isinstance(v, float):
            s = f"{v:.4f}"
        else:
            s = str(v)
        cells.append(s.rjust(max(len(c), 10)))
    return "  ".join(cells)


def format_header(columns: Iterable[str]) -> str:
    return "  ".join(c.rjust(max(len(c), 10)) for c in columns)


def format_table(
    rows: list[Mapping[str, Any]], columns: Iterable[str] | None = None
) -> str:
    """``rows`` (dicts) as an aligned text table with a header line."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = list(columns)
    return "\n".join([format_header(columns)] + [format_row(r, columns) for r in rows])


def _epoch_batches(batches: Any, epoch: int) -> Iterable[Any]:
    return batches(epoch) if callable(batches) else batches


def _progress_bar(progress: bool | None, total: int | None) -> Any:
    if progress is None:
        long_run = total is None or total >= PROGRESS_MIN_STEPS
        progress = long_run and sys.stdout.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is optional: pip install mxjax[cli]
        return None
    return tqdm(total=total, unit="step", leave=False, dynamic_ncols=True)


def fit(
    loss_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any] | Callable[[int], Iterable[Any]],
    optimizer: Optimizer,
    num_epoch: int = 1,
    *,
    state: PyTree | None = None,
    has_aux: bool = False,
    eval_fn: Callable[[Params], Mapping[str, Any]] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    max_steps: int | None = None,
    steps_per_epoch: int | None = None,
    progress: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``params`` with ``optimizer``: MXNet's ``init_optimizer`` + ``fit``.

    Each step is ``jax.jit(step, donate_argnums=(0, 1))``: the gradient of
    ``loss_fn(params, batch)``, then ``optimizer.update``; parameters and optimizer
    state are donated and updated in place (``params`` and ``state`` passed in are
    copied first, so they stay valid). Host synchronisation happens once per epoch.
    When the state has the flat layout (``multi_tensor=True``, or the default ``"auto"``
    where it chose it: :func:`~mxjax.optimizer.layout_of`), the step updates the
    parameters packed into the optimizer's buffers (``optimizer.pack``), the fastest
    form, and ``loss_fn`` and ``eval_fn`` still receive the tree (``unpack()``, which
    is differentiable); the result's params are the tree.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (a scalar), or with ``has_aux=True``
        ``-> (loss, {name: scalar metric})``. For MXNet Module's gradient scale use a
        loss summed over the batch and ``rescale_grad=1/batch_size`` (what
        ``mxjax train`` does), or a mean loss and ``rescale_grad=1``: the updates are
        the same.
      params: the initial parameters (e.g. from :func:`mxjax.initializer.init_params`).
      batches: an iterable of batches that can be iterated once per epoch (a list, or
        an object whose ``__iter__`` starts over), or ``epoch -> iterable`` (to
        reshuffle each epoch). A batch is any pytree of arrays; keep its shapes fixed
        (each new shape compiles the step again).
      optimizer: an mxjax :class:`~mxjax.optimizer.Optimizer`.
      num_epoch: number of passes over ``batches``.
      state: the optimizer state to start from (default ``optimizer.init(params)``).
      has_aux: ``loss_fn`` returns ``(loss, metrics)``.
      eval_fn: ``params -> {name: value}``, run after each epoch (validation accuracy);
        its values join the epoch summary.
      on_epoch: called with each epoch summary as soon as it is complete (printing).
      max_steps: stop after this many steps in all (the last epoch may be partial).
      steps_per_epoch: for the progress bar's total when ``batches`` has no ``len``.
      progress: a tqdm bar (``None``: only on a TTY and for runs of at least
        :data:`PROGRESS_MIN_STEPS` steps).
      should_stop: asked before every step; ``True`` stops the run with
        :class:`Interrupted` (a command line's SIGINT handler sets a flag it reads, so
        a Ctrl-C that lands in a callback is not lost).

    Returns:
      ``FitResult(params, state, history)``; see :class:`History`.

    Raises:
      ValueError: ``num_epoch < 1``, ``max_steps < 1`` or an epoch without batches.
      Interrupted: a ``KeyboardInterrupt`` (or ``should_stop``) during the run,
        saying where it stopped.

    >>> import jax.numpy as jnp, mxjax as mx
    >>> data = [(jnp.ones((4, 2)), jnp.ones(4))] * 3
    >>> loss = lambda p, b: jnp.mean((b[0] @ p["w"] - b[1]) ** 2)
    >>> p, s, h = mx.fit(loss, {"w": jnp.zeros(2)}, data, mx.optimizer.create("sgd",
    ...                  learning_rate=0.1), num_epoch=2)
    >>> h.steps, [e["epoch"] for e in h.epochs]
    (6, [1, 2])
    """
    if isinstance(num_epoch, bool) or not isinstance(num_epoch, int) or num_epoch < 1:
        raise ValueError(f"num_epoch must be an int >= 1, got {num_epoch!r}")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(f"max_steps must be an int >= 1 or None, got {max_steps!r}")

    # Copies: the step donates its inputs, and a state may share buffers with the
    # params it was initialised from (DCASGD's previous-weight slot).
    params = jax.tree.map(jnp.array, params)
    state = jax.tree.map(jnp.array, optimizer.init(params) if state is None else state)
    schedule = lr_schedule(optimizer)
    # A state of the flat layout (multi_tensor=True, or "auto" where it chose it) steps
    # fastest on parameters packed into its buffers; the loss still sees the tree.
    packed = layout_of(state) == "multi-tensor"
    tree: Callable[[Any], Params] = (lambda p: p.unpack()) if packed else (lambda p: p)
    if packed:
        params = optimizer.pack(params)
    loss_of = loss_fn if has_aux else lambda p, b: (loss_fn(p, b), {})
    grad_fn = jax.value_and_grad(lambda p, b: loss_of(tree(p), b), has_aux=True)

    def step(params: Params, state: PyTree, batch: Any) -> tuple[Any, ...]:
        (loss, aux), grads = grad_fn(params, batch)
        new_params, new_state = optimizer.update(grads, state, params)
        count = getattr(new_state, "count", None)
        lr = (
            schedule(count) if count is not None else jnp.full((), jnp.nan, jnp.float32)
        )
        return new_params, new_state, loss, aux, lr

    jstep = jax.jit(step, donate_argnums=(0, 1))

    if (
        steps_per_epoch is None
        and not callable(batches)
        and hasattr(batches, "__len__")
    ):
        steps_per_epoch = len(batches)  # type: ignore[arg-type]
    total = None if steps_per_epoch is None else steps_per_epoch * num_epoch
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    bar = _progress_bar(progress, total)

    losses: list[np.ndarray] = []
    lrs: list[np.ndarray] = []
    metrics: dict[str, list[np.ndarray]] = {}
    epochs: list[dict[str, float]] = []
    first_step_time = math.nan
    n_steps = epoch = 0
    try:
        for epoch in range(num_epoch):
            t0 = time.perf_counter()
            ep_loss, ep_lr, ep_aux = [], [], []
            for batch in _epoch_batches(batches, epoch):
                if should_stop is not None and should_stop():
                    raise Interrupted(epoch + 1, n_steps)
                if n_steps == 0:
                    t_first = time.perf_counter()
                    params, state, loss, aux, lr = jstep(params, state, batch)
                    jax.block_until_ready(loss)
                    first_step_time = time.perf_counter() - t_first
                else:
                    params, state, loss, aux, lr = jstep(params, state, batch)
                ep_loss.append(loss)
                ep_lr.append(lr)
                ep_aux.append(aux)
                n_steps += 1
                if bar is not None:
                    bar.update(1)
                if max_steps is not None and n_steps >= max_steps:
                    break
            if not ep_loss:
                raise ValueError(
                    f"batches yielded no batch in epoch {epoch + 1}; pass a list or an "
                    "epoch -> iterable function (a generator is used up after one "
                    "epoch)"
                )
            ep_loss_np, ep_lr_np, ep_aux_np = jax.device_get((ep_loss, ep_lr, ep_aux))
            jax.block_until_ready(params)
            elapsed = time.perf_counter() - t0
            loss_arr = np.asarray(ep_loss_np, np.float64)
            losses.append(loss_arr)
            lrs.append(np.asarray(ep_lr_np, np.float64))
            summary: dict[str, Any] = {
                "epoch": epoch + 1,
                "steps": len(ep_loss),
                "loss": float(loss_arr.mean()),
            }
            for name in ep_aux_np[0]:
                vals = np.asarray([a[name] for a in ep_aux_np], np.float64)
                metrics.setdefault(name, []).append(vals)
                summary[name] = float(vals.mean())
            summary["lr"] = float(lrs[-1][-1])
            if eval_fn is not None:
                summary.update({k: float(v) for k, v in eval_fn(tree(params)).items()})
            summary["time"] = elapsed
            epochs.append(summary)
            if bar is not None:
                bar.set_postfix(loss=f"{summary['loss']:.4g}", refresh=False)
            if on_epoch is not None:
                ctx = (
                    bar.external_write_mode()
                    if bar is not None
                    else contextlib.nullcontext()
                )
                with ctx:
                    on_epoch(summary)
            if max_steps is not None and n_steps >= max_steps:
                break
    except Interrupted:
        raise
    except KeyboardInterrupt as e:
        raise Interrupted(epoch + 1, n_steps) from e
    finally:
        if bar is not None:
            bar.close()

    history = History(
        loss=np.concatenate(losses),
        lr=np.concatenate(lrs),
        metrics={k: np.concatenate(v) for k, v in metrics.items()},
        epochs=epochs,
        first_step_time=first_step_time,
    )
    return FitResult(tree(params), state, history)
