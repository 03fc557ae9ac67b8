"""Stand-ins for a leaf's name and index that refuse to be read.

A rule's kernel receives ``h.name`` and ``h.index`` (:class:`~mxjax.optimizer.Hyper`).
Where mxjax wants one program for many leaves (the multi-tensor proof in
:mod:`~mxjax.optimizer._verify`, the per-kind programs of
:mod:`~mxjax.optimizer._leaves`), it traces the kernel with these in their place: any
use raises, so a kernel that reads either is seen to read it.
"""

from __future__ import annotations

from typing import Any


class NameRead(Exception):
    """Raised by :class:`NameProbe` when a rule reads ``h.name``."""


class IndexRead(Exception):
    """Raised by :class:`IndexProbe` when a rule reads ``h.index``."""


class NameProbe:
    """``h.name`` while verifying: any use of it (a method, a comparison, ``str``, a
    hash, a C function wanting a ``str``) is an error, so a rule that reads the name
    is seen to read it."""

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise NameRead("h.name")

    __getattr__ = __str__ = __repr__ = __format__ = __hash__ = __eq__ = __ne__ = _read
    __lt__ = __le__ = __gt__ = __ge__ = __len__ = __iter__ = __contains__ = _read
    __getitem__ = __add__ = __radd__ = __mod__ = __bool__ = __fspath__ = _read


class IndexProbe:
    """``h.index`` where it must not matter: any use of it (arithmetic, a comparison,
    ``int``, an array conversion, ...) is an error."""

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise IndexRead("h.index")

    __index__ = __int__ = __float__ = __bool__ = __hash__ = __eq__ = __ne__ = _read
    __lt__ = __le__ = __gt__ = __ge__ = __add__ = __radd__ = __sub__ = __rsub__ = _read
    __mul__ = __rmul__ = __mod__ = __rshift__ = __and__ = __str__ = __repr__ = _read
    __neg__ = __floordiv__ = __truediv__ = __pow__ = __jax_array__ = __array__ = _read
    __getattr__ = __format__ = _read
