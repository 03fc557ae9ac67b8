"""MXNet's rule for an optimizer's ``learning_rate`` and ``lr_scheduler`` [Q1]."""

from __future__ import annotations

import warnings

from .. import _validate
from .._typing import Schedule
from .._validate import real as check_range  # re-exported for the optimizers


def resolve_learning_rate(
    learning_rate: float | Schedule | None, lr_scheduler: Schedule | None
) -> tuple[float | Schedule, float | None]:
    """MXNet's rule for ``learning_rate`` and ``lr_scheduler`` [Q1].

    Returns ``(rate_or_schedule, learning_rate_as_float_or_None)``.

    * Neither given: 0.01.
    * A scheduler and no ``learning_rate``: the scheduler as it is.
    * A scheduler and a ``learning_rate`` different from its ``base_lr``: MXNet overwrites
      the scheduler's ``base_lr`` and announces it; mxjax does the same through the
      scheduler's ``with_base_lr`` (so the warmup target and Poly/Cosine's original
      ``base_lr`` stay as constructed, [Q33]) and warns. Optimizers whose MXNet class
      passes its own default ``learning_rate`` (Adam: 0.001, ...) therefore override the
      scheduler's ``base_lr`` unless ``learning_rate`` is given explicitly.
    * ``learning_rate`` may itself be a schedule (optax style).
    """
    if callable(learning_rate):
        if lr_scheduler is not None:
            raise ValueError(
                "give the schedule as learning_rate or as lr_scheduler, not both"
            )
        return learning_rate, None
    if learning_rate is not None:
        check_range("learning_rate", learning_rate, lo=0.0, none_ok=True)
        learning_rate = float(learning_rate)
    if lr_scheduler is None:
        rate = 0.01 if learning_rate is None else learning_rate
        return rate, rate
    _validate.function("lr_scheduler", lr_scheduler, none_ok=True)
    if learning_rate is None:
        return lr_scheduler, None
    base_lr = getattr(lr_scheduler, "base_lr", None)
    if base_lr is not None and base_lr != learning_rate:
        with_base_lr = getattr(lr_scheduler, "with_base_lr", None)
        if with_base_lr is None:
            raise ValueError(
                f"learning_rate={learning_rate} differs from lr_scheduler.base_lr="
                f"{base_lr} and the scheduler has no with_base_lr() to override it"
            )
        warnings.warn(
            f"learning_rate={learning_rate} overrides lr_scheduler.base_lr={base_lr} "
            "(MXNet behaviour: the optimizer's learning_rate wins; pass "
            "learning_rate=None to keep the scheduler's)",
            UserWarning,
            stacklevel=4,
        )
        lr_scheduler = with_base_lr(learning_rate)
    return lr_scheduler, learning_rate
