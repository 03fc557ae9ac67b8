"""``CosineScheduler``: half-cosine decay from base_lr to final_lr over max_update."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._validate import real
from ._base import LRScheduler, set_fields
from ._poly import blend, check_max_update, fractions
from ._warmup import WarmupMode, as_num_update


@dataclasses.dataclass(frozen=True, init=False)
class CosineScheduler(LRScheduler):
    r"""Half-cosine decay to ``final_lr`` at ``max_update`` (MXNet ``CosineScheduler``).

    With ``orig`` = the constructor's ``base_lr``, ``W = warmup_steps``,
    ``M = max_update`` and ``n = num_update``:

    .. math::

        lr(n) = \begin{cases}
          \text{warmup}(n) & n < W \\
          final + (orig - final) \frac{1 + \cos(\pi (n - W) / (M - W))}{2}
            & W \le n \le M \\
          final & n > M
        \end{cases}

    The middle case is evaluated with ``(1 + cos(pi (n - W)/(M - W)))/2 =
    sin(pi/2 * (M - n)/(M - W))**2`` (and ``sin(pi/2 * (n - W)/(M - W))**2`` for its
    complement when ``final_lr > base_lr``), the same numbers without float32
    cancellation.

    MXNet's quirks reproduced or decided (as for :class:`PolyScheduler`):

    * the decay uses ``base_lr_orig``, captured at construction; :meth:`with_base_lr`
      changes the ``base_lr`` attribute but not the values [Q1]/[Q33];
    * after ``M`` this returns ``final_lr`` (MXNet: the last value computed with
      ``n <= M``, which is ``final_lr`` for non-decreasing calls through ``M``;
      [Q34]/[Q36]);
    * ``M <= W`` is refused at construction (MXNet: ZeroDivisionError at ``n = W``
      [Q37]).

    Args:
      max_update: the update count at which ``final_lr`` is reached; an ``int >= 1``
        and ``> warmup_steps``.
      base_lr: the lr at the end of the warmup; ``>= 0``.
      final_lr: the lr from ``max_update`` on; ``>= 0`` (may exceed ``base_lr``).
      warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.

    Example:
      >>> s = CosineScheduler(max_update=4, base_lr=1.0)
      >>> [round(float(s(n)), 6) for n in range(0, 6)]
      [1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
    """

    max_update: int
    final_lr: float

    def __init__(
        self,
        max_update: int,
        base_lr: float = 0.01,
        final_lr: float = 0,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0,
        warmup_mode: WarmupMode = "linear",
    ) -> None:
        check_max_update(max_update, warmup_steps)
        real("final_lr", final_lr, lo=0.0)
        set_fields(self, max_update=max_update, final_lr=float(final_lr))
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)

    @property
    def base_lr_orig(self) -> float:
        """The constructor's ``base_lr``, which the decay uses (MXNet's attribute)."""
        return self.warmup_final_lr

    def __call__(self, num_update: ArrayLike) -> jax.Array:
        n = as_num_update(num_update)
        u, done = fractions(n, self.warmup_steps, self.max_update)
        half_pi = jnp.float32(math.pi / 2)
        p, one_minus_p = jnp.sin(half_pi * u) ** 2, jnp.sin(half_pi * done) ** 2
        return self.warmup(n, blend(self.base_lr_orig, self.final_lr, p, one_minus_p))
