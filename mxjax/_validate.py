"""The one argument validator of mxjax's optimizers, schedulers and initializers.

Every check raises

* ``TypeError`` when the value has the wrong type (a ``str`` or a ``bool`` where a
  number is expected, a ``float`` where an ``int`` is, a number where a ``bool`` is),
* ``ValueError`` when it has the right type and a wrong value,

with one message format, ``"<argument> must be <rule>, got <value!r>"`` and, where it
helps, the reason in parentheses. ``<rule>`` is written exactly as the *Rule* column of
``docs/validation.md`` (``real in [0, 1)``, ``int in [1, 2147483647]``, ``bool``,
``one of "linear", "constant"``, ``callable``, each optionally ``or None``);
``tests/reliability/test_validation_table.py`` checks every row against these messages.

A ``real`` must also survive float32, the dtype every hyperparameter is used in: a
value that overflows float32, a nonzero value below float32's smallest normal number
(it rounds to 0 or to a subnormal that CPUs flush to 0), and a value whose float32
rounding breaks the rule (``beta1=0.9999999999`` rounds to ``1.0``) are refused.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
INT32_MAX = 2**31 - 1
T = TypeVar("T")


def fail(
    name: str, rule: str, value: Any, why: str = "", exc: type[Exception] = ValueError
) -> NoReturn:
    """Raise ``exc`` in the one message format."""
    raise exc(f"{name} must be {rule}, got {value!r}" + (f" ({why})" if why else ""))


def _bound(b: float | int) -> str:
    if isinstance(b, float) and b.is_integer() and abs(b) < 2**53:
        return str(int(b))
    return repr(b)


def interval(
    kind: str,
    lo: float | None,
    hi: float | None,
    lo_open: bool = False,
    hi_open: bool = False,
    lo_name: str | None = None,
    hi_name: str | None = None,
) -> str:
    """The rule text ``"<kind> in [lo, hi)"`` (``-inf``/``inf`` for no bound)."""
    left = "(-inf" if lo is None else ("(" if lo_open else "[") + (lo_name or _bound(lo))
    right = "inf)" if hi is None else (hi_name or _bound(hi)) + (")" if hi_open else "]")
    return f"{kind} in {left}, {right}"


def _inside(x: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and not (x > lo if lo_open else x >= lo):
        return False
    return hi is None or (x < hi if hi_open else x <= hi)


def _f32(x: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def real(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    lo_name: str | None = None,
    hi_name: str | None = None,
    none_ok: bool = False,
    note: str = "",
) -> Any:
    """``value`` as a float: a finite real number in the interval that float32 holds.

    ``lo_name``/``hi_name`` name the argument a bound comes from (``[0, base_lr]``);
    ``note`` says where a bound comes from (shown when the value is outside).
    ``None`` is returned as is when ``none_ok``.
    """
    rule = interval("real", lo, hi, lo_open, hi_open, lo_name, hi_name)
    rule += " or None" if none_ok else ""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        fail(name, rule, value, f"a {type(value).__name__}", TypeError)
    bounds = ", ".join(
        [f"{n}={b!r}" for n, b in ((lo_name, lo), (hi_name, hi)) if n is not None]
        + ([note] if note else [])
    )
    try:
        x = float(value)
    except OverflowError:  # an int beyond float range
        fail(name, rule, value, "beyond float range")
    if not math.isfinite(x) or not _inside(x, lo, hi, lo_open, hi_open):
        fail(name, rule, value, bounds)
    x32 = _f32(x)
    if math.isinf(x32):
        fail(name, rule, value, f"it overflows float32, whose largest value is {F32_MAX:.8g}")
    if x != 0 and abs(x32) < F32_TINY:
        fail(
            name,
            rule,
            value,
            f"it rounds to {x32!r} in float32, whose smallest normal value is "
            f"{F32_TINY:.8g}; use 0 or a larger value",
        )
    lo32 = None if lo is None else _f32(lo)
    hi32 = None if hi is None else _f32(hi)
    if not _inside(x32, lo32, hi32, lo_open, hi_open):
        fail(name, rule, value, f"it rounds to {x32!r} in float32")
    return x


def integer(
    name: str,
    value: Any,
    *,
    lo: int | None = None,
    hi: int | None = None,
    none_ok: bool = False,
) -> Any:
    """``value`` as an ``int`` in ``[lo, hi]`` (a ``bool`` or a ``float`` is refused)."""
    rule = interval("int", lo, hi) + (" or None" if none_ok else "")
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        fail(name, rule, value, f"a {type(value).__name__}", TypeError)
    if not _inside(int(value), lo, hi, False, False):
        fail(name, rule, value)
    return int(value)


def flag(name: str, value: Any) -> bool:
    """``value`` if it is exactly ``True`` or ``False``."""
    if not isinstance(value, bool):
        fail(name, "bool", value, f"a {type(value).__name__}", TypeError)
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> Any:
    """``value`` if it is one of the strings ``choices`` (case-sensitive)."""
    rule = "one of " + ", ".join(f'"{c}"' for c in choices)
    if not isinstance(value, str):
        fail(name, rule, value, f"a {type(value).__name__}", TypeError)
    if value not in choices:
        fail(name, rule, value)
    return value


def function(name: str, value: Any, *, none_ok: bool = False) -> Callable[..., Any] | None:
    """``value`` if it is callable (or ``None`` when ``none_ok``)."""
    if value is None and none_ok:
        return None
    if not callable(value):
        rule = "callable" + (" or None" if none_ok else "")
        fail(name, rule, value, f"a {type(value).__name__}", TypeError)
    return value


def instance(name: str, value: Any, types: type[T] | tuple[type, ...], rule: str) -> T:
    """``value`` if it is an instance of ``types``, else ``TypeError`` saying ``rule``."""
    if not isinstance(value, types):
        fail(name, rule, value, f"a {type(value).__name__}", TypeError)
    return value
