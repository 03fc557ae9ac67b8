"""``MultiFactorScheduler``: multiply the lr by ``factor`` after each listed step."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._validate import INT32_MAX, fail, instance, integer, real
from ._base import LRScheduler, set_fields
from ._warmup import WarmupMode, as_num_update


@dataclasses.dataclass(frozen=True, init=False)
class MultiFactorScheduler(LRScheduler):
    r"""Multiply the lr by ``factor`` after each of the given steps (MXNet
    ``MultiFactorScheduler``).

    With ``b = base_lr``, ``W = warmup_steps``, ``n = num_update`` and
    ``c(n) = #{s in step : n > s}``:

    .. math::

        lr(n) = \begin{cases} \text{warmup}(n) & n < W \\
                              b \cdot factor^{c(n)} & n \ge W \end{cases}

    MXNet's quirks reproduced:

    * the comparison is strict, ``n > s``: the lr changes on the update *after* each
      step, and steps are absolute update counts (they include the warmup);
    * steps that fall inside the warmup all apply at once at ``n = W``;
    * there is no ``stop_factor_lr`` clamp;
    * ``factor**c`` is MXNet's float64 repeated product, rounded once to float32.

    Args:
      step: the update counts after which the lr decays: a non-empty list of ints
        ``>= 1``, strictly increasing.
      factor: the decay factor, in ``(0, 1]`` (MXNet also accepts ``<= 0``).
      base_lr: the lr before the first decay; ``>= 0``.
      warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.

    Example:
      >>> s = MultiFactorScheduler(step=[2, 4], factor=0.5, base_lr=1.0)
      >>> [float(s(n)) for n in range(0, 7)]
      [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    step: tuple[int, ...]
    factor: float

    def __init__(
        self,
        step: Sequence[int],
        factor: float = 1,
        base_lr: float = 0.01,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0,
        warmup_mode: WarmupMode = "linear",
    ) -> None:
        rule = "a non-empty, strictly increasing list of ints >= 1"
        instance("step", step, (list, tuple), rule)
        if not step:
            fail("step", rule, step)
        for i, s in enumerate(step):
            integer(f"step[{i}]", s, lo=1, hi=INT32_MAX)
            if i and s <= step[i - 1]:
                fail("step", rule, step, f"step[{i - 1}]={step[i - 1]!r} >= step[{i}]")
        real("factor", factor, lo=0.0, lo_open=True, hi=1.0)
        set_fields(self, step=tuple(step), factor=float(factor))
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)

    def __call__(self, num_update: ArrayLike) -> jax.Array:
        n = as_num_update(num_update)
        table = [self.base_lr]
        for _ in self.step:  # MXNet's float64 repeated product
            table.append(table[-1] * self.factor)
        steps = jnp.asarray(self.step, jnp.int32)
        c = jnp.searchsorted(steps, n, side="left", method="compare_all")  # #{s < n}
        return self.warmup(n, jnp.asarray(table, jnp.float32)[c])
