"""``FactorScheduler``: multiply the lr by ``factor`` every ``step`` updates."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._validate import INT32_MAX, integer, real
from ._base import LRScheduler, set_fields
from ._warmup import WarmupMode, as_num_update

_TINY = 1e-46  # below float32's smallest subnormal: b * factor**k is 0 in float32


def factor_pow(factor: float, k: jax.Array, k_max: int) -> jax.Array:
    """``factor ** k`` in float32 to a few ulp for int32 ``0 <= k <= k_max``.

    ``exp(k * ln(factor))`` loses ``|k ln(factor)| * 2**-24`` relative accuracy when
    ``k * ln(factor)`` is rounded to float32 (about 1e-5 near underflow), so the
    float64 ``ln(factor)`` is split into a head with few enough bits that ``k * head``
    is exact and a small tail: ``exp(k * head) * exp(k * tail)``.
    """
    if factor == 1.0:
        return jnp.ones(k.shape, jnp.float32)
    log_f = math.log(factor)
    bits = max(24 - int(k_max).bit_length(), 1)
    mant, expo = math.frexp(log_f)
    head = math.ldexp(round(mant * 2**bits) / 2**bits, expo)
    kf = k.astype(jnp.float32)
    return jnp.exp(kf * jnp.float32(head)) * jnp.exp(kf * jnp.float32(log_f - head))


@dataclasses.dataclass(frozen=True, init=False)
class FactorScheduler(LRScheduler):
    r"""Multiply the lr by ``factor`` every ``step`` updates (MXNet FactorScheduler).

    With ``b = base_lr``, ``W = warmup_steps`` and ``n = num_update``:

    .. math::

        k = \max(0, \lceil n / step \rceil - 1), \qquad
        lr(n) = \begin{cases}
          \text{warmup}(n) & n < W \\
          b & n \ge W,\ k = 0 \\
          \max(b \cdot factor^k,\ stop\_factor\_lr) & n \ge W,\ k \ge 1
        \end{cases}

    This is the closed form of MXNet's stateful loop (``while n > count + step:
    count += step; base_lr *= factor; clamp to stop_factor_lr``), exact for any
    non-decreasing sequence of calls (MXNet never goes back for a smaller ``n``,
    [Q34]; this function does). MXNet's quirks reproduced:

    * the first decay is at ``n = step + 1``, then ``2 step + 1``, ...; decays are
      counted from ``n = 0``, **not** from the end of the warmup [Q35], so decays that
      fall inside the warmup all apply at once at ``n = W``;
    * the ``stop_factor_lr`` clamp applies only once a decay happened (``k >= 1``): a
      ``base_lr`` already below it is returned as is until the first decay, which then
      jumps *up* to ``stop_factor_lr``;
    * MXNet multiplies repeatedly in float64; here ``factor**k`` is evaluated in
      float32 to a few ulp (``rtol`` 1e-6 against MXNet).

    Args:
      step: decay every ``step`` updates; an ``int >= 1``.
      factor: the decay factor, in ``(0, 1]`` (MXNet also accepts ``<= 0``).
      stop_factor_lr: the lr never decays below this; ``>= 0``.
      base_lr: the lr before the first decay; ``>= 0``.
      warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.

    Example:
      >>> s = FactorScheduler(step=2, factor=0.5, base_lr=0.1)
      >>> [round(float(s(n)), 6) for n in range(1, 8)]
      [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    """

    step: int
    factor: float
    stop_factor_lr: float

    def __init__(
        self,
        step: int,
        factor: float = 1,
        stop_factor_lr: float = 1e-8,
        base_lr: float = 0.01,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0,
        warmup_mode: WarmupMode = "linear",
    ) -> None:
        integer("step", step, lo=1, hi=INT32_MAX)
        real("factor", factor, lo=0.0, lo_open=True, hi=1.0)
        real("stop_factor_lr", stop_factor_lr, lo=0.0)
        set_fields(
            self, step=step, factor=float(factor), stop_factor_lr=float(stop_factor_lr)
        )
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)

    def _max_decays(self) -> int:
        """A ``k`` from which on the lr no longer changes (it is clamped or 0)."""
        if self.factor == 1.0:
            return 1
        floor = max(self.stop_factor_lr, _TINY)
        base = max(self.base_lr, _TINY)
        k = math.ceil(math.log(floor / base) / math.log(self.factor)) + 1
        return min(max(k, 1), 2**24)

    def __call__(self, num_update: ArrayLike) -> jax.Array:
        n = as_num_update(num_update)
        k_max = self._max_decays()
        k = jnp.clip((n - 1) // self.step, 0, k_max)
        base = jnp.float32(self.base_lr)
        decayed = jnp.maximum(
            base * factor_pow(self.factor, k, k_max), jnp.float32(self.stop_factor_lr)
        )
        return self.warmup(n, jnp.where(k >= 1, decayed, base))
