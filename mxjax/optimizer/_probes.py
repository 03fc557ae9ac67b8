"""Stand-ins for a leaf's name and index that refuse to be read.

A rule's kernel receives ``h.name`` and ``h.index`` (:class:`~mxjax.optimizer.Hyper`).
Where mxjax wants one program for many leaves (the multi-tensor proof in
:mod:`~mxjax.optimizer._verify`, the per-kind programs of
:mod:`~mxjax.optimizer._leaves`), it traces the kernel with these in their place: any
use raises, so a kernel that reads either is seen to read it. What they cannot see: a
kernel that asks for the type or identity of either (``isinstance(h.index, int)``,
``h.name is None``) and then does not read it; a kernel must not branch on those.
"""

from __future__ import annotations

from typing import Any


class NameRead(BaseException):
    """Raised by :class:`NameProbe` when a rule reads ``h.name`` (a ``BaseException``,
    so that a kernel's own ``except Exception`` cannot take it for a failure of its own
    and go on another way)."""


class IndexRead(BaseException):
    """Raised by :class:`IndexProbe` when a rule reads ``h.index`` (a
    ``BaseException``, as :class:`NameRead`)."""


class NameProbe:
    """``h.name`` where it must not matter: any use of it (a method, a comparison,
    ``str``, a hash, a C function wanting a ``str``) is an error, so a rule that reads
    the name is seen to read it."""

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise NameRead("h.name")

    __getattr__ = __str__ = __repr__ = __format__ = __hash__ = __eq__ = __ne__ = _read
    __lt__ = __le__ = __gt__ = __ge__ = __len__ = __iter__ = __contains__ = _read
    __getitem__ = __add__ = __radd__ = __mod__ = __bool__ = __fspath__ = _read
    __mul__ = __rmul__ = __rmod__ = __reduce__ = __reduce_ex__ = _read


class IndexProbe:
    """``h.index`` where it must not matter: any use of it (arithmetic, a comparison,
    ``int``, an array conversion, ...) is an error."""

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise IndexRead("h.index")

    __index__ = __int__ = __float__ = __bool__ = __hash__ = __eq__ = __ne__ = _read
    __lt__ = __le__ = __gt__ = __ge__ = __add__ = __radd__ = __sub__ = __rsub__ = _read
    __mul__ = __rmul__ = __mod__ = __rmod__ = __rshift__ = __rrshift__ = _read
    __lshift__ = __rlshift__ = __and__ = __rand__ = __or__ = __ror__ = __xor__ = _read
    __rxor__ = __neg__ = __pos__ = __abs__ = __invert__ = __round__ = __floor__ = _read
    __ceil__ = __trunc__ = __floordiv__ = __rfloordiv__ = __truediv__ = _read
    __rtruediv__ = __divmod__ = __rdivmod__ = __pow__ = __rpow__ = __complex__ = _read
    __jax_array__ = __array__ = __getattr__ = __str__ = __repr__ = __format__ = _read


def read_probe(e: BaseException) -> bool:
    """Whether ``e`` says a kernel read a stand-in: a probe's own error, or the error of
    a C function that wanted a ``str`` or an ``int`` and got a probe."""
    return isinstance(e, (NameRead, IndexRead)) or any(
        p.__name__ in str(e) for p in (NameProbe, IndexProbe)
    )
