"""``PolyScheduler``: polynomial decay from base_lr to final_lr at max_update."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._validate import INT32_MAX, fail, integer, interval, real
from ._base import LRScheduler, set_fields
from ._warmup import WarmupMode, as_num_update


def fractions(
    n: jax.Array, warmup_steps: int, max_update: int
) -> tuple[jax.Array, jax.Array]:
    """``(u, 1 - u)`` in float32 with ``u = clip((M - n) / (M - W), 0, 1)``, the
    fraction of the decay still to go. Both are ratios of exact integers, so neither
    suffers cancellation near ``n = W`` or ``n = M``."""
    span = max_update - warmup_steps
    done = jnp.clip(n - warmup_steps, 0, span)
    return (span - done).astype(jnp.float32) / span, done.astype(jnp.float32) / span


def blend(orig: float, final: float, p: jax.Array, one_minus_p: jax.Array) -> jax.Array:
    """``final + (orig - final) * p`` in float32, as ``orig + (final - orig) * (1 - p)``
    when ``final > orig`` so that neither form cancels (both terms are >= 0)."""
    if orig >= final:
        return jnp.float32(final) + jnp.float32(orig - final) * p
    return jnp.float32(orig) + jnp.float32(final - orig) * one_minus_p


def check_max_update(max_update: object, warmup_steps: object) -> None:
    """``max_update`` is an int >= 1 and > ``warmup_steps`` (MXNet: ZeroDivisionError
    at ``n = W`` when equal [Q37]; nonsense when smaller)."""
    integer("max_update", max_update, lo=1, hi=INT32_MAX)
    integer("warmup_steps", warmup_steps, lo=0, hi=INT32_MAX)
    if max_update <= warmup_steps:  # type: ignore
        rule = interval("int", 1, INT32_MAX) + ", > warmup_steps"
        fail("max_update", rule, max_update, f"warmup_steps={warmup_steps!r}")


@dataclasses.dataclass(frozen=True, init=False)
class PolyScheduler(LRScheduler):
    r"""Polynomial decay to ``final_lr`` at ``max_update`` (MXNet ``PolyScheduler``).

    With ``orig`` = the constructor's ``base_lr``, ``W = warmup_steps``,
    ``M = max_update`` and ``n = num_update``:

    .. math::

        lr(n) = \begin{cases}
          \text{warmup}(n) & n < W \\
          final + (orig - final) \left(1 - \frac{n - W}{M - W}\right)^{pwr}
            & W \le n \le M \\
          final & n > M
        \end{cases}

    MXNet's quirks reproduced or decided:

    * the decay uses ``base_lr_orig``, captured at construction: an optimizer that
      overwrites ``base_lr`` (:meth:`with_base_lr`, [Q1]) changes the ``base_lr``
      attribute but not the values [Q33];
    * after ``M`` MXNet returns the value of its last call with ``n <= M`` [Q36]. We
      assume non-decreasing calls that pass through ``M`` (as an optimizer's are;
      [Q34]), so this returns ``final_lr`` exactly;
    * MXNet raises ZeroDivisionError at ``n = W`` when ``M == W`` [Q37]; this refuses
      ``M <= W`` at construction.

    Args:
      max_update: the update count at which ``final_lr`` is reached; an ``int >= 1``
        and ``> warmup_steps``.
      base_lr: the lr at the end of the warmup; ``>= 0``.
      pwr: the power of the decay; ``> 0``.
      final_lr: the lr from ``max_update`` on; ``>= 0`` (may exceed ``base_lr``).
      warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.

    Example:
      >>> s = PolyScheduler(max_update=4, base_lr=1.0, pwr=1)
      >>> [float(s(n)) for n in range(0, 7)]
      [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]
    """

    max_update: int
    pwr: float
    final_lr: float

    def __init__(
        self,
        max_update: int,
        base_lr: float = 0.01,
        pwr: float = 2,
        final_lr: float = 0,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0,
        warmup_mode: WarmupMode = "linear",
    ) -> None:
        check_max_update(max_update, warmup_steps)
        real("pwr", pwr, lo=0.0, lo_open=True)
        real("final_lr", final_lr, lo=0.0)
        set_fields(
            self, max_update=max_update, pwr=float(pwr), final_lr=float(final_lr)
        )
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)

    @property
    def base_lr_orig(self) -> float:
        """The constructor's ``base_lr``, which the decay uses (MXNet's attribute)."""
        return self.warmup_final_lr

    def __call__(self, num_update: ArrayLike) -> jax.Array:
        n = as_num_update(num_update)
        u, done = fractions(n, self.warmup_steps, self.max_update)
        pwr = jnp.float32(self.pwr)
        # 1 - u**pwr, accurate near u = 1 too: log(u) = log1p(-done) (XLA's log1p(-1)
        # is finite, so log(u) takes the other half)
        log_u = jnp.where(done < 0.5, jnp.log1p(-done), jnp.log(u))
        rise = -jnp.expm1(pwr * log_u)
        return self.warmup(n, blend(self.base_lr_orig, self.final_lr, u**pwr, rise))
