r"""FTRL-Proximal (MXNet ``Ftrl``)."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots


def ftrl(
    lamda1: float = 0.01,
    learning_rate: float | None = 0.1,
    beta: float = 1.0,
    **common: Any,
) -> Optimizer:
    r"""FTRL-Proximal (McMahan et al., 2013), as MXNet 1.9.1's ``ftrl_update``.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g) \\
        z &\leftarrow z + \hat g - \bigl(\sqrt{n + \hat g^2} - \sqrt{n}\bigr)\,w/\eta \\
        n &\leftarrow n + \hat g^2 \\
        w &\leftarrow \frac{\mathrm{sign}(z)\,\lambda_1 - z}
             {(\beta + \sqrt{n})/\eta + \lambda}\;[\,|z| > \lambda_1\,]

    The state ``(z, n)`` is float32 whatever the weight's dtype (MXNet creates it
    without a dtype); a float16/bfloat16 weight without ``multi_precision`` is computed in
    float32 and rounded back (MXNet 1.9.1 crashes there). Weight decay λ (``wd``) enters
    only the denominator; ``lamda1`` is the L1 strength. The weight is *set* from ``z``
    and ``n``, so a changing η changes the ``w/η`` term, as in the paper.

    Quirks reproduced:

    * **[Q1]** Ftrl never overrides a scheduler: MXNet does not pass ``learning_rate``
      to the base class (it sets ``self.lr`` afterwards), so with an ``lr_scheduler``
      the scheduler's own ``base_lr`` is used and ``learning_rate`` only applies without
      one. mxjax does the same, and warns when a ``learning_rate`` other than the
      default 0.1 is ignored this way.
    * ``clip_gradient`` follows the fused-op convention [Q7] (0 means no clipping).
    * η divides: η = 0 (an ``lr_mult`` of 0, a schedule reaching 0) gives NaN weights,
      as in MXNet. A float ``learning_rate`` must be > 0.

    Args:
      lamda1: λ1 >= 0, the L1 regularisation (0.01).
      learning_rate: η > 0 (0.1), ``None``, or a schedule.
      beta: β >= 0 (1.0), the per-coordinate learning-rate offset.
      **common: the base arguments.

    Raises:
      ValueError: ``lamda1`` < 0, ``beta`` < 0 or ``learning_rate`` <= 0.

    References:
      McMahan et al., `Ad Click Prediction: a View from the Trenches
      <https://dl.acm.org/doi/10.1145/2487575.2488200>`_, KDD 2013.
    """
    check_range("lamda1", lamda1, lo=0.0)
    check_range("beta", beta, lo=0.0)
    if learning_rate is not None and not callable(learning_rate):
        check_range("learning_rate", learning_rate, lo=0.0, lo_open=True, none_ok=True)
    if common.get("lr_scheduler") is not None:
        if learning_rate is not None and learning_rate != 0.1:
            warnings.warn(
                f"ftrl ignores learning_rate={learning_rate} when an lr_scheduler is "
                "given (MXNet 1.9.1: the scheduler's base_lr is used)",
                UserWarning,
                stacklevel=2,
            )
        learning_rate = None  # [Q1]: the scheduler always wins

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        z, n = s
        dt = w.dtype
        l1, b = jnp.asarray(lamda1, dt), jnp.asarray(beta, dt)
        z = z + g - (jnp.sqrt(n + g * g) - jnp.sqrt(n)) * w / h.lr
        n = n + g * g
        sign_z = jnp.sign(z)
        w = (sign_z * l1 - z) / ((b + jnp.sqrt(n)) / h.lr + h.wd)
        # MXNet multiplies by the 0/1 mask, so a NaN weight stays NaN (not 0)
        return jnp.where(jnp.abs(z) > l1, w, w * 0), (z, n)

    return from_rule(
        Rule(
            kernel, slots=("z", "n"), wd_mode="kernel", state_dtype="float32",
            elementwise=True,
        ),
        name="ftrl",
        learning_rate=learning_rate,
        hyperparams={"lamda1": lamda1, "beta": beta},
        **common,
    )
