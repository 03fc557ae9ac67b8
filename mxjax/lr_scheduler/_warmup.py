"""MXNet's warmup (``LRScheduler.get_warmup_lr``), written once for all schedulers."""

from __future__ import annotations

from typing import Literal, get_args

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._typing import Schedule
from .._validate import INT32_MAX, choice, function, integer, real

WarmupMode = Literal["linear", "constant"]


def as_num_update(num_update: ArrayLike) -> jax.Array:
    """``num_update`` (a Python int or an integer array, traced or not) as int32."""
    n = jnp.asarray(num_update)
    if not jnp.issubdtype(n.dtype, jnp.integer):
        raise TypeError(f"num_update must be an integer, got dtype {n.dtype}")
    return n.astype(jnp.int32)


def check_warmup(
    base_lr: object,
    warmup_steps: object,
    warmup_begin_lr: object,
    warmup_mode: object,
    *,
    base_lr_name: str = "base_lr",
) -> None:
    """MXNet's ``LRScheduler.__init__`` checks as ValueErrors, plus ``base_lr >= 0``
    and ``warmup_begin_lr >= 0`` (``base_lr_name``: the argument's name in messages)."""
    top = real(base_lr_name, base_lr, lo=0.0)
    integer("warmup_steps", warmup_steps, lo=0, hi=INT32_MAX)
    real("warmup_begin_lr", warmup_begin_lr, lo=0.0, hi=top, hi_name=base_lr_name)
    choice("warmup_mode", warmup_mode, get_args(WarmupMode))


def warmup_lr(
    n: jax.Array,
    warmup_steps: int,
    warmup_begin_lr: float,
    warmup_final_lr: float,
    warmup_mode: WarmupMode,
) -> jax.Array:
    """The warmup value at int32 ``n`` (meaningful for ``n < warmup_steps``), float32.

    linear: ``warmup_begin_lr + (warmup_final_lr - warmup_begin_lr) * n /
    warmup_steps``;
    constant: ``warmup_begin_lr``.
    """
    begin = jnp.float32(warmup_begin_lr)
    if warmup_mode == "constant" or warmup_steps == 0:
        return jnp.broadcast_to(begin, n.shape)
    rise = jnp.float32(warmup_final_lr - warmup_begin_lr)
    return begin + rise * n.astype(jnp.float32) / jnp.float32(warmup_steps)


def apply_warmup(
    n: jax.Array,
    lr: jax.Array,
    warmup_steps: int,
    warmup_begin_lr: float,
    warmup_final_lr: float,
    warmup_mode: WarmupMode,
) -> jax.Array:
    """``warmup_lr(n)`` where ``n < warmup_steps``, else ``lr`` (MXNet's first
    branch)."""
    if warmup_steps == 0:
        return lr
    ramp = warmup_lr(n, warmup_steps, warmup_begin_lr, warmup_final_lr, warmup_mode)
    return jnp.where(n < warmup_steps, ramp, lr)


def with_warmup(
    schedule: Schedule,
    warmup_steps: int,
    warmup_final_lr: float,
    warmup_begin_lr: float = 0.0,
    warmup_mode: WarmupMode = "linear",
) -> Schedule:
    """Put MXNet's warmup in front of any ``num_update -> lr`` function.

    For ``num_update < warmup_steps`` the result ramps from ``warmup_begin_lr`` towards
    ``warmup_final_lr`` (``'linear'``) or stays at ``warmup_begin_lr``
    (``'constant'``); from ``warmup_steps`` on it is ``schedule(num_update)``, which
    sees the absolute count, as MXNet's schedulers do.

    Args:
      schedule: any function of ``num_update`` returning an lr (a jnp scalar).
      warmup_steps: int >= 0.
      warmup_final_lr: the lr the ramp heads for (MXNet: the constructor's base_lr),
        >= 0.
      warmup_begin_lr: the lr at ``num_update = 0``, in ``[0, warmup_final_lr]``.
      warmup_mode: ``'linear'`` or ``'constant'``.

    Example:
      >>> import jax.numpy as jnp
      >>> s = with_warmup(lambda n: 0.1 * 0.5 ** (n // 10), 4, warmup_final_lr=0.1)
      >>> [round(float(s(n)), 6) for n in (0, 1, 3, 4, 10)]
      [0.0, 0.025, 0.075, 0.1, 0.05]
    """
    function("schedule", schedule)
    check_warmup(
        warmup_final_lr,
        warmup_steps,
        warmup_begin_lr,
        warmup_mode,
        base_lr_name="warmup_final_lr",
    )

    def warmed(num_update: ArrayLike) -> jax.Array:
        n = as_num_update(num_update)
        lr = jnp.asarray(schedule(n), jnp.float32)
        return apply_warmup(
            n, lr, warmup_steps, warmup_begin_lr, warmup_final_lr, warmup_mode
        )

    return warmed
