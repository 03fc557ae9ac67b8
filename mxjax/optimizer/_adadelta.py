r"""AdaDelta (MXNet ``AdaDelta``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def adadelta(
    learning_rate: float | None = None, rho: float = 0.90, epsilon: float = 1e-5, **common: Any
) -> Optimizer:
    r"""AdaDelta (Zeiler, 2012), as MXNet 1.9.1.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        a_g &\leftarrow \rho a_g + (1-\rho)\hat g^2 \\
        \Delta &= \frac{\sqrt{a_\Delta + \epsilon}}{\sqrt{a_g + \epsilon}}\,\hat g, \qquad
        a_\Delta \leftarrow \rho a_\Delta + (1-\rho)\Delta^2 \\
        w &\leftarrow w - (\Delta + \lambda w)

    **Quirks:** the learning rate and any scheduler are ignored, and weight decay is
    not scaled by a learning rate [Q23] (the count still advances). MXNet 1.9.1 also
    multiplies the *caller's* gradient array by ``rescale_grad`` in place [Q22]; JAX
    arrays are immutable, so mxjax cannot and does not. States are float32;
    ``clip_gradient`` follows the NDArray convention [Q7].

    Args:
      learning_rate: accepted and ignored, as in MXNet 1.9.1.
      rho: decay rate in [0, 1).
      epsilon: ε > 0.
      **common: the base arguments.
    """
    check_range("rho", rho, lo=0.0, hi=1.0, hi_open=True)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        acc_g, acc_delta = s
        r, one_r, eps = jnp.float32(rho), jnp.float32(1.0 - rho), jnp.float32(epsilon)
        acc_g = acc_g * r + one_r * g * g
        delta = jnp.sqrt(acc_delta + eps) / jnp.sqrt(acc_g + eps) * g
        acc_delta = acc_delta * r + one_r * delta * delta
        return w - (delta + h.wd * w), (acc_g, acc_delta)

    return from_rule(
        Rule(
            kernel,
            slots=("acc_g", "acc_delta"),
            wd_mode="kernel",
            clip_mode="python",
            state_dtype="float32",
            elementwise=True,
        ),
        name="adadelta",
        learning_rate=learning_rate,
        hyperparams={"rho": rho, "epsilon": epsilon},
        **common,
    )
