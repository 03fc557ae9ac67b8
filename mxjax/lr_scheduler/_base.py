"""``LRScheduler``: MXNet's scheduler base class, as an immutable dataclass."""

from __future__ import annotations

import copy
import dataclasses
from typing import TypeVar

import jax
from jax.typing import ArrayLike

from .._validate import real
from ._warmup import (
    WarmupMode,
    apply_warmup,
    as_num_update,
    check_warmup,
    warmup_lr,
)

S = TypeVar("S", bound="LRScheduler")


@dataclasses.dataclass(frozen=True)
class LRScheduler:
    """Base class of MXNet's schedulers (``mx.lr_scheduler.LRScheduler``): the warmup.

    A scheduler is an immutable callable ``sched(num_update) -> lr`` (a float32
    ``jax.Array``) where ``num_update`` is MXNet's update count, 1 on the first update.
    Subclasses implement ``__call__`` as a pure ``jnp`` function of ``num_update`` and
    wrap it in :meth:`warmup`; it must work under ``jit`` and ``vmap``.

    For ``num_update < warmup_steps`` (``W``) every scheduler returns

    * ``'linear'``: ``warmup_begin_lr + (warmup_final_lr - warmup_begin_lr) * n / W``,
    * ``'constant'``: ``warmup_begin_lr``,

    where ``warmup_final_lr`` is the ``base_lr`` given to the constructor. It stays
    frozen when :meth:`with_base_lr` changes ``base_lr`` (MXNet [Q33]).

    Args:
      base_lr: the lr after warmup; ``>= 0``.
      warmup_steps: number of warmup updates; an ``int >= 0`` (0: no warmup).
      warmup_begin_lr: the lr at ``num_update = 0``; in ``[0, base_lr]`` (MXNet only
        checks ``<= base_lr``).
      warmup_mode: ``'linear'`` or ``'constant'``.
    """

    base_lr: float = 0.01
    warmup_steps: int = 0
    warmup_begin_lr: float = 0.0
    warmup_mode: WarmupMode = "linear"
    warmup_final_lr: float = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        check_warmup(
            self.base_lr, self.warmup_steps, self.warmup_begin_lr, self.warmup_mode
        )
        object.__setattr__(self, "base_lr", float(self.base_lr))
        object.__setattr__(self, "warmup_begin_lr", float(self.warmup_begin_lr))
        object.__setattr__(self, "warmup_final_lr", self.base_lr)

    def __call__(self, num_update: ArrayLike) -> jax.Array:
        """The lr at ``num_update``; subclasses override this."""
        raise NotImplementedError("must override this")

    def get_warmup_lr(self, num_update: ArrayLike) -> jax.Array:
        """The warmup ramp at ``num_update`` (used where it is < warmup_steps)."""
        return warmup_lr(
            as_num_update(num_update),
            self.warmup_steps,
            self.warmup_begin_lr,
            self.warmup_final_lr,
            self.warmup_mode,
        )

    def warmup(self, num_update: ArrayLike, lr: ArrayLike) -> jax.Array:
        """``get_warmup_lr(num_update)`` while ``num_update < warmup_steps``, else
        ``lr``: wrap a subclass's decay in this."""
        return apply_warmup(
            as_num_update(num_update),
            jax.numpy.asarray(lr, jax.numpy.float32),
            self.warmup_steps,
            self.warmup_begin_lr,
            self.warmup_final_lr,
            self.warmup_mode,
        )

    def with_base_lr(self: S, lr: float) -> S:
        """A copy whose ``base_lr`` is ``lr``: what MXNet's optimizer does when it
        overwrites ``scheduler.base_lr`` [Q1]. The warmup still ramps to the
        constructor's ``base_lr`` (``warmup_final_lr``) [Q33]; ``warmup_begin_lr <=
        lr`` is not re-checked (MXNet does not either).

        Args:
          lr: the new ``base_lr``, ``>= 0``.
        """
        real("base_lr", lr, lo=0.0)
        new = copy.copy(self)
        object.__setattr__(new, "base_lr", float(lr))
        return new


def set_fields(obj: object, **fields: object) -> None:
    """Set fields of a frozen dataclass from its hand-written ``__init__``."""
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
