r"""LARS (MXNet ``LARS``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import flag
from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import rescale_clip
from ._sgd import _check_momentum, sgd_kernel
from ._trust import l2_norm, safe_div

# MXNet's Updater hands LARS at most this many leaves per call
# (``MXNET_OPTIMIZER_AGGREGATION_SIZE``, default 4) [Q18].
AGGREGATE_NUM = 4
_EXEMPT = ("gamma", "beta", "bias")


def lars(
    learning_rate: float | None = None,
    momentum: float = 0.0,
    lazy_update: bool = True,
    eta: float = 0.001,
    eps: float = 0.0,
    momentum_correction: bool = True,
    **common: Any,
) -> Optimizer:
    r"""Layer-wise adaptive rate scaling (You et al., 2017), as MXNet 1.9.1 ``LARS``.

    .. math::

        \eta_i &= \eta\,\frac{\mathrm{eta}\,\lVert w\rVert}
                 {\lVert g\rVert\,\mathrm{rs} + \lambda\lVert w\rVert + \mathrm{eps}}
                 \quad\text{if } \lVert w\rVert > 0,\ \lVert g\rVert > 0
                 \text{ and the leaf is not exempt; else } \eta \\
        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        m &\leftarrow \mu_{\mathrm{eff}} m - \eta_i\lambda w - \eta_i\hat g, \qquad
        w \leftarrow w + m \qquad
        (\mu = 0:\ w \leftarrow w + (-\eta_i\lambda w - \eta_i\hat g))

    This is MXNet's ``multi_sum_sq`` + ``multi_lars`` + ``preloaded_multi_sgd(_mom)``
    path (the SGD kernel of :func:`~mxjax.optimizer.sgd`). The norms are per leaf, in
    float32, of the *raw* gradient (before rescale and clip) and the weight.

    **Quirks reproduced:**

    * [Q17] a leaf whose name ends in ``gamma``, ``beta`` or ``bias`` (no underscore
      needed: ``l1bias`` is exempt too) keeps the plain lr. MXNet names an index it has
      no name for ``str(index)`` (never exempt); in mxjax every leaf has its path name.
    * [Q18] with ``momentum_correction``, ``μ_eff = μ·lr/last_lr`` (the *global*
      scheduler lr, before ``lr_mult``; plain μ when ``last_lr`` is 0). MXNet advances
      ``last_lr`` once per ``update`` *call*, and its Updater hands LARS at most 4
      leaves per call, so only the first call of a step sees the ratio. mxjax applies
      the ratio to the leaves with tree index < 4 (exact when all leaves share one
      dtype, as MXNet also groups the calls by dtype).
    * [Q2] under ``wd_by_name=True`` only names ending in ``_weight`` keep weight decay
      (LARS's own rule, stricter than the base one: ``_gamma`` gets none).
    * [Q8] under ``multi_precision`` the state is ``(momentum, master)``, MXNet's LARS
      layout. MXNet takes ``||w||`` from the float16 weight, mxjax from the master copy.

    Args:
      learning_rate: η; ``None`` means 0.01 (or the scheduler's).
      momentum: μ in [0, 1).
      lazy_update: accepted for MXNet compatibility (no effect on dense gradients).
      eta: the LARS coefficient, ≥ 0 (MXNet's docstring calls it ``lars_eta``).
      eps: ≥ 0, added to the denominator (docstring: ``lars_epsilon``).
      momentum_correction: scale the momentum by the global lr ratio [Q18].
      **common: the base arguments.

    Raises:
      ValueError: a hyperparameter out of range (named in the message).
    """
    momentum = _check_momentum(momentum)
    check_range("eta", eta, lo=0.0)
    check_range("eps", eps, lo=0.0)
    flag("lazy_update", lazy_update)
    flag("momentum_correction", momentum_correction)
    sgd_rule = sgd_kernel(momentum)
    correct = momentum_correction and momentum > 0.0

    def prepare(extra, t, lr, num_leaves):
        del t, num_leaves
        last, started = extra
        last = jnp.where(started, last, lr)
        ratio = safe_div(lr, last, last != 0)
        return ratio, (lr, jnp.asarray(True))

    def kernel(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        lr = h.lr
        if not h.name.endswith(_EXEMPT):
            w_norm, g_norm = l2_norm(w), l2_norm(g)
            lr32 = lr.astype(jnp.float32)
            ok = (w_norm > 0) & (g_norm > 0)
            den = (
                g_norm * jnp.float32(h.rescale_grad) + h.wd.astype(jnp.float32) * w_norm
            )
            den = den + jnp.float32(eps)
            scaled = lr32 * jnp.float32(eta) * w_norm
            lr = jnp.where(ok, scaled / jnp.where(ok, den, 1.0), lr32).astype(w.dtype)
        if correct and h.index < AGGREGATE_NUM:
            (mom,) = s
            s = (mom * h.extra.astype(mom.dtype),)
        return sgd_rule.kernel(w, rescale_clip(g, h), s, h._replace(lr=lr))

    # Not elementwise: the trust ratio needs the whole leaf's norms.
    return from_rule(
        Rule(
            kernel,
            slots=sgd_rule.slots,
            wd_mode="raw",
            wd_suffixes=("_weight",),
            init_extra=(lambda: (jnp.zeros((), jnp.float32), jnp.asarray(False)))
            if correct
            else None,
            prepare=prepare if correct else None,
            elementwise=False,
        ),
        name="lars",
        learning_rate=learning_rate,
        hyperparams=dict(
            momentum=momentum,
            lazy_update=lazy_update,
            eta=eta,
            eps=eps,
            momentum_correction=momentum_correction,
        ),
        **common,
    )
