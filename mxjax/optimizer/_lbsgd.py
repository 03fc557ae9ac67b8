r"""Large-batch SGD (MXNet ``LBSGD``)."""

from __future__ import annotations

import warnings
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp

from .._validate import INT32_MAX, choice, fail, integer, interval
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import rescale_clip
from ._learning_rate import resolve_learning_rate
from ._sgd import _check_momentum, sgd_kernel

WarmupStrategy = Literal["linear", "power2", "sqrt", "lars"]


_INT32_MAX = INT32_MAX  # update counts are int32


def lbsgd(
    learning_rate: float | None = None,
    momentum: float = 0.0,
    multi_precision: bool = False,
    warmup_strategy: WarmupStrategy = "linear",
    warmup_epochs: int = 5,
    batch_scale: int = 1,
    updates_per_epoch: int = 32,
    begin_epoch: int = 0,
    num_epochs: int = 60,
    **common: Any,
) -> Optimizer:
    r"""Large-batch SGD with warmup and gradient accumulation (MXNet 1.9.1 ``LBSGD``).

    Every call is a micro-batch; its gradient is accumulated per leaf. With
    ``k = begin_epoch·updates_per_epoch + (number of calls so far)``, when
    ``k % batch_scale == 0`` (a macro step):

    .. math::

        \bar g &= \mathrm{cum} / \mathrm{batch\_scale}, \qquad
            \mathrm{cum} \leftarrow 0 \\
        \eta' &= \eta \cdot \mathrm{mult}(k), \qquad
        \hat g = \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot\bar g) \\
        w &\leftarrow (1 - \eta'\lambda) w - \eta'\hat g \quad (\mu = 0), \qquad
        m \leftarrow \mu m - \eta'\lambda w - \eta'\hat g,\
            w \leftarrow w + m \quad (\mu > 0)

    Other calls leave ``w`` and the momentum unchanged (MXNet runs ``sgd_update`` with
    lr 0, so a non-finite gradient still turns ``w`` into NaN, reproduced).
    ``mult(k)``, with ``N = warmup_epochs·updates_per_epoch`` and ``M = batch_scale``:
    ``M`` once ``k ≥ N``; else 1 if ``N ≤ 1``; else ``linear``: ``1 + (M-1)k/N``,
    ``power2``: ``1 + (M-1)k²/N²``, ``sqrt``: ``1 + (M-1)\sqrt{k/N}``. Strategy
    ``lars`` uses ``clip(sqrt(Σw² / (Σḡ² + λΣw² + 1e-18)), 0.01, 100)`` instead
    (``ḡ`` neither rescaled nor clipped).

    **Quirks:**

    * [Q5] MXNet reads the lr *before* counting the update, and its Updater updates the
      leaves one by one: the first leaf (tree index 0) gets ``schedule(num_update)``
      with the pre-increment count (0, 1, 2, ...) while every later leaf of the same
      step sees the count the first one just advanced (1, 2, 3, ...). Reproduced.
    * [Q19] MXNet stores the first micro-batch's gradient *by reference*, so a caller
      that reuses one gradient buffer double-counts the last micro-batch in the first
      macro step. JAX arrays are immutable, so this cannot happen in mxjax: the result
      is MXNet's with a fresh gradient array per call.
    * ``num_epochs`` is accepted and unused, as in MXNet. With ``batch_scale=1`` this is
      SGD with the scheduler one step behind for the first leaf.

    Args:
      learning_rate: η; ``None`` means 0.01 (or the scheduler's).
      momentum: μ in [0, 1).
      multi_precision: keep a float32 master copy of float16/bfloat16 leaves.
      warmup_strategy: ``"linear"``, ``"power2"``, ``"sqrt"`` or ``"lars"``.
      warmup_epochs: int ≥ 0.
      batch_scale: int ≥ 1, micro-batches per macro step (and the top lr multiplier).
      updates_per_epoch: int ≥ 1, micro-batch calls per epoch (sets the warmup length).
      begin_epoch: int ≥ 0, offsets ``k`` (and so the phase of the macro steps).
      num_epochs: int ≥ 0, unused.
      **common: the base arguments.

    Raises:
      ValueError: a hyperparameter out of range (named in the message); the int
        arguments (and the products ``begin_epoch * updates_per_epoch``,
        ``warmup_epochs * updates_per_epoch``) must fit the int32 update count, and
        an int argument given as another type is a TypeError.
    """
    momentum = _check_momentum(momentum)
    choice("warmup_strategy", warmup_strategy, get_args(WarmupStrategy))
    integer("warmup_epochs", warmup_epochs, lo=0, hi=_INT32_MAX)
    integer("batch_scale", batch_scale, lo=1, hi=_INT32_MAX)
    integer("updates_per_epoch", updates_per_epoch, lo=1, hi=_INT32_MAX)
    integer("begin_epoch", begin_epoch, lo=0, hi=_INT32_MAX)
    integer("num_epochs", num_epochs, lo=0, hi=_INT32_MAX)
    for what, n in (
        ("begin_epoch * updates_per_epoch", begin_epoch * updates_per_epoch),
        ("warmup_epochs * updates_per_epoch", warmup_epochs * updates_per_epoch),
    ):
        if n > _INT32_MAX:
            fail(what, interval("int", 0, _INT32_MAX), n, "int32 update counts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # from_rule announces it once
        rate, _ = resolve_learning_rate(learning_rate, common.get("lr_scheduler"))
    lr_mult = common.get("lr_mult") or {}  # validated by from_rule
    begin = common.get("begin_num_update", 0)
    init_updates = begin_epoch * updates_per_epoch
    nwup = warmup_epochs * updates_per_epoch
    max_mult = float(batch_scale)
    sgd_rule = sgd_kernel(momentum)
    accumulate = batch_scale > 1

    def lbmult(k: jax.Array) -> jax.Array:
        full = jnp.float32(max_mult)
        if nwup <= 1:
            return jnp.where(k >= nwup, full, jnp.float32(1.0))
        x = k.astype(jnp.float32) / jnp.float32(nwup)
        if warmup_strategy == "linear":
            ramp = 1 + (max_mult - 1) * x
        elif warmup_strategy == "power2":
            ramp = 1 + (max_mult - 1) * (x * x)
        else:  # "sqrt"
            ramp = 1 + (max_mult - 1) * jnp.sqrt(x)
        return jnp.where(k >= nwup, full, ramp)

    def lars_mult(w: jax.Array, g: jax.Array, wd: jax.Array) -> jax.Array:
        w2 = jnp.sum(jnp.square(w.astype(jnp.float32)))
        g2 = jnp.sum(jnp.square(g.astype(jnp.float32)))
        return jnp.clip(
            jnp.sqrt(w2 / (g2 + wd.astype(jnp.float32) * w2 + jnp.float32(1e-18))),
            0.01,
            100.0,
        )

    def prepare(extra, t, lr, num_leaves):
        del extra, lr, num_leaves
        # Leaves after the first see the count already advanced by the first [Q5].
        return jnp.asarray(rate(t), jnp.float32), None

    def kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        dt = w.dtype
        lr = h.lr
        if callable(rate) and h.index > 0:
            lr = (h.extra * lr_mult.get(h.name, 1.0)).astype(dt)
        if accumulate:
            *s, cum = s
            cum = cum + g
            g_bar = cum / jnp.asarray(batch_scale, dt)
        else:
            g_bar = g
        k = init_updates + (h.t - begin)
        if warmup_strategy == "lars":
            mult = lars_mult(w, g_bar, h.wd)
        else:
            mult = lbmult(k)
        lr = (lr.astype(jnp.float32) * mult).astype(dt)
        g_hat = rescale_clip(g_bar, h)
        if momentum > 0.0:
            w_new, s_new = sgd_rule.kernel(w, g_hat, tuple(s), h._replace(lr=lr))
        else:  # the standalone sgd_update form (1 - lr·wd)·w - lr·ĝ
            w_new, s_new = (1 - lr * h.wd) * w - lr * g_hat, ()
        if not accumulate:
            return w_new, s_new
        macro = k % batch_scale == 0
        w_new = jnp.where(macro, w_new, w - jnp.zeros((), dt) * g)
        s_new = tuple(jnp.where(macro, a, b) for a, b in zip(s_new, s, strict=True))
        return w_new, (*s_new, jnp.where(macro, jnp.zeros_like(cum), cum))

    return from_rule(
        Rule(
            kernel,
            slots=sgd_rule.slots + (("cum_grad",) if accumulate else ()),
            wd_mode="raw",
            count_offset=-1,
            prepare=prepare if callable(rate) else None,
            elementwise=False,  # per-leaf lr lag [Q5]; 'lars' needs whole-leaf sums
        ),
        name="lbsgd",
        learning_rate=learning_rate,
        hyperparams=dict(
            momentum=momentum,
            warmup_strategy=warmup_strategy,
            warmup_epochs=warmup_epochs,
            batch_scale=batch_scale,
            updates_per_epoch=updates_per_epoch,
            begin_epoch=begin_epoch,
            num_epochs=num_epochs,
        ),
        multi_precision=multi_precision,
        **common,
    )
