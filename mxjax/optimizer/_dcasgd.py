r"""Delay-compensated asynchronous SGD (MXNet ``DCASGD``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def dcasgd(
    learning_rate: float | None = None,
    momentum: float = 0.0,
    lamda: float = 0.04,
    **common: Any,
) -> Optimizer:
    r"""DC-ASGD (Zheng et al., 2017), as MXNet 1.9.1's Python ``DCASGD``.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        \Delta &= -\eta\bigl(\hat g + \lambda w
                  + \mathrm{lamda}\,\hat g^2\,(w - w_{\mathrm{prev}})\bigr) \\
        m &\leftarrow \mu m + \Delta \quad (\mu > 0), \qquad
        w_{\mathrm{prev}} \leftarrow w, \qquad w \leftarrow w + m
        \ \ (\text{or } w + \Delta \text{ for } \mu = 0)

    The state holds the previous weight, initialised to the weight itself by ``init``
    (so the first step is plain SGD), preceded by the momentum when μ > 0. Weight decay
    enters outside the clip and outside the compensation term [Q16];
    ``clip_gradient`` follows MXNet's NDArray convention [Q7] (0 zeroes the gradient).

    **Quirk [Q12]:** MXNet 1.9.1's momentum path is unusable (``if mom:`` on an NDArray
    raises), so only ``momentum=0`` matches a real 1.9.1 run. For μ > 0 mxjax
    implements the evident intent of the 1.9.1 code, ``mom = μ·mom + Δ; w += mom``, the
    form MXNet 2.0 also uses. (2.0 additionally moves ``λw`` into ĝ, and hence into the
    compensation term; mxjax keeps 1.9.1's Δ so μ → 0 gives the 1.9.1 rule.)

    Args:
      learning_rate: η; ``None`` means 0.01 (or the scheduler's).
      momentum: μ in [0, 1) (0.0).
      lamda: the delay-compensation strength, >= 0 (0.04).
      **common: the base arguments.

    Raises:
      ValueError: ``momentum`` outside [0, 1) or ``lamda`` < 0.

    References:
      Zheng et al., `Asynchronous Stochastic Gradient Descent with Delay Compensation
      <https://arxiv.org/abs/1609.08326>`_, ICML 2017.
    """
    check_range("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    check_range("lamda", lamda, lo=0.0)
    mu = float(momentum)

    def delta(w: jax.Array, g: jax.Array, prev: jax.Array, h: Hyper) -> jax.Array:
        # The NDArray expression of MXNet, operation by operation in the weight dtype.
        lam = jnp.asarray(lamda, w.dtype)
        return -h.lr * ((g + h.wd * w) + lam * g * g * (w - prev))

    def plain(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        (prev,) = s
        return w + delta(w, g, prev, h), (w,)

    def with_momentum(
        w: jax.Array, g: jax.Array, s: Slots, h: Hyper
    ) -> tuple[jax.Array, Slots]:
        mom, prev = s
        mom = mom * jnp.asarray(mu, w.dtype) + delta(w, g, prev, h)
        return w + mom, (mom, w)

    rule = (
        Rule(
            with_momentum,
            slots=("momentum", "previous_weight"),
            init_slots=lambda w: (jnp.zeros_like(w), w),
            wd_mode="kernel",
            clip_mode="python",
            elementwise=True,
        )
        if mu > 0.0
        else Rule(
            plain,
            slots=("previous_weight",),
            init_slots=lambda w: (w,),
            wd_mode="kernel",
            clip_mode="python",
            elementwise=True,
        )
    )
    return from_rule(
        rule,
        name="dcasgd",
        learning_rate=learning_rate,
        hyperparams={"momentum": mu, "lamda": lamda},
        **common,
    )
