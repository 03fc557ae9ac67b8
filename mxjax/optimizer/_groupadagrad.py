r"""Group AdaGrad (MXNet ``mx.optimizer.contrib.GroupAdaGrad``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def _init_history(w: jax.Array) -> tuple[jax.Array]:
    if w.ndim != 2:
        raise ValueError(
            f"groupadagrad supports only 2-D weights (rows, columns), as MXNet's "
            f"GroupAdaGrad; got a parameter of shape {tuple(w.shape)}"
        )
    # shaped (and, under explicit sharding, sharded) as the kernel's row means
    rows = jnp.mean(w, axis=-1, keepdims=True)
    return (jnp.zeros_like(rows, dtype=jnp.promote_types(jnp.float32, w.dtype)),)


def groupadagrad(
    learning_rate: float | None = None, eps: float = 1e-5, **common: Any
) -> Optimizer:
    r"""AdaGrad with one history value per row (MXNet 1.9.1 contrib ``GroupAdaGrad``).

    For a 2-D weight (an embedding table, say):

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        h_r &\leftarrow h_r + \tfrac{1}{C}\textstyle\sum_j \hat g_{rj}^2 \\
        w_{rj} &\leftarrow w_{rj} - \eta\,\hat g_{rj} / \sqrt{h_r + \epsilon}

    The history has shape ``(rows, 1)`` and is float32. ε sits inside the square root
    (as in 1.9.1; 2.0 moved it outside). ``clip_gradient`` follows MXNet's NDArray
    convention [Q7] (0 zeroes the gradient). The rule is not elementwise (a row's
    gradients share one history value).

    Restrictions, as MXNet's assertions (refused with a clear error instead):

    * every parameter must be 2-D (``ValueError`` at ``init``);
    * weight decay is not supported: ``wd`` must be 0 (``ValueError`` at construction;
      ``wd_mult`` cannot enable it).

    Args:
      learning_rate: η; ``None`` means 0.01 (or the scheduler's).
      eps: ε > 0 (1e-5).
      **common: the base arguments (``wd`` must be 0).

    Raises:
      ValueError: ``eps`` <= 0 or ``wd`` != 0.

    References:
      Duchi, Hazan & Singer, `Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, JMLR 2011.
    """
    check_range("eps", eps, lo=0.0, lo_open=True)
    wd = common.get("wd", 0.0)
    check_range("wd", wd, lo=0.0, hi=0.0)  # MXNet: "not supported for GroupAdaGrad"

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        (hist,) = s
        hist = hist + jnp.mean(g * g, axis=-1, keepdims=True).astype(hist.dtype)
        div = h.lr * g / jnp.sqrt(hist + jnp.float32(eps)).astype(w.dtype)
        return w - div, (hist,)

    return from_rule(
        Rule(
            kernel,
            slots=("history",),
            init_slots=_init_history,
            wd_mode="kernel",
            clip_mode="python",
            state_dtype="float32",
            elementwise=False,
        ),
        name="groupadagrad",
        learning_rate=learning_rate,
        hyperparams={"eps": eps},
        **common,
    )
