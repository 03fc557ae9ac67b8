r"""Signum and signSGD (MXNet ``Signum``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def _sign(x: jax.Array) -> jax.Array:
    """MXNet's ``(x > 0) - (x < 0)``: ``sign(0) = 0``."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def signum(
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    wd_lh: float = 0.0,
    **common: Any,
) -> Optimizer:
    r"""Signum, and signSGD at ``momentum=0`` (Bernstein et al., 2018; MXNet ``Signum``).

    With momentum (MXNet's ``signum_update`` kernel):

    .. math::

        m &\leftarrow \mu m - (1-\mu)\bigl(\lambda w
             + \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g)\bigr) \\
        w &\leftarrow (1 - \eta\,\mathrm{wd\_lh})\,w + \eta\,\mathrm{sign}(m)

    Without momentum (``signsgd_update``):

    .. math::

        w \leftarrow (1 - \eta(\lambda + \mathrm{wd\_lh}))\,w - \eta\,\mathrm{sign}(g)

    ``sign(0) = 0``. The momentum slot holds MXNet's *negative* EMA of the gradient.
    ``wd`` enters the EMA outside the clip; ``wd_lh`` is decoupled weight decay
    (Loshchilov & Hutter) applied to the weight only.

    Quirks reproduced:

    * **[Q11]** signSGD (``momentum=0``) ignores ``rescale_grad`` and ``clip_gradient``
      (a negative ``rescale_grad`` does not flip the step).
    * **[Q11]** MXNet 1.9.1 *crashes* for ``momentum=0`` with ``wd_lh != 0`` (the
      ``signsgd_update`` op has no ``wd_lh``). mxjax implements the evident intent, as
      MXNet 2.0 does: ``wd_lh`` is folded into ``wd`` (the formula above).
    * **[Q1]** the default ``learning_rate=0.01`` is passed to the base, so it overrides
      an ``lr_scheduler``'s ``base_lr`` (with a warning) unless ``learning_rate`` is given
      explicitly (``learning_rate=None`` keeps the scheduler's).
    * ``clip_gradient`` follows the fused-op convention [Q7]: 0 or negative means no
      clipping.

    Args:
      learning_rate: η (0.01), ``None`` (the scheduler's, or 0.01), or a schedule.
      momentum: μ in [0, 1) (0.9); 0 selects signSGD and keeps no state.
      wd_lh: decoupled weight decay, >= 0 (0.0).
      **common: the base arguments (``wd``, ``rescale_grad``, ``clip_gradient``,
        ``lr_scheduler``, ``multi_precision``, ...).

    Raises:
      ValueError: ``momentum`` outside [0, 1) or ``wd_lh`` < 0.

    Example:
      >>> import jax.numpy as jnp, mxjax as mx
      >>> opt = mx.optimizer.signum(learning_rate=0.1, momentum=0.0)
      >>> p = jnp.array([1.0, 1.0, 1.0])
      >>> p, s = opt.update(jnp.array([2.0, -3.0, 0.0]), opt.init(p), p)
      >>> p
      Array([0.9, 1.1, 1. ], dtype=float32)

    References:
      Bernstein, Wang, Azizzadenesheli & Anandkumar, `signSGD: Compressed Optimisation
      for Non-Convex Problems <https://arxiv.org/abs/1802.04434>`_, ICML 2018.
    """
    check_range("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    check_range("wd_lh", wd_lh, lo=0.0)
    mu, lh = float(momentum), float(wd_lh)

    def signum_kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        (mom,) = s
        dt = w.dtype
        m, one_m = jnp.asarray(mu, dt), 1 - jnp.asarray(mu, dt)
        mom = m * mom - one_m * h.wd * w - one_m * g
        decay = 1 - h.lr * jnp.asarray(lh, dt)
        return decay * w + h.lr * _sign(mom), (mom,)

    def signsgd_kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        wd = h.wd + jnp.asarray(lh, w.dtype) if lh else h.wd
        return (1 - h.lr * wd) * w - h.lr * _sign(g), s

    rule = (
        Rule(signum_kernel, slots=("momentum",), wd_mode="kernel", elementwise=True)
        if mu > 0.0
        else Rule(signsgd_kernel, wd_mode="raw", elementwise=True)
    )
    return from_rule(
        rule,
        name="signum",
        learning_rate=learning_rate,
        hyperparams={"momentum": mu, "wd_lh": lh},
        **common,
    )
