r"""MXNet's optimizer class names: ``mx.optimizer.SGD(momentum=0.9)`` is
``create("sgd", momentum=0.9)``.

Each class takes MXNet's keyword arguments and returns the same optimizer as
:func:`~mxjax.optimizer.create`; the result is an instance of the class (and of
:class:`~mxjax.optimizer.Optimizer`), so ``isinstance(opt, mx.optimizer.Adam)`` holds as
in MXNet. MXNet 1.9.1's classes plus MXNet 2.0's ``AdamW``, ``AdaBelief`` and ``LANS``;
``GroupAdaGrad`` lives in :mod:`mxjax.optimizer.contrib`, as in MXNet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ._contract import Optimizer


class NamedOptimizer(Optimizer):
    """An optimizer built under its MXNet class name (see the module docstring)."""

    factory: Callable[..., Optimizer]

    def __new__(cls, **kwargs: Any) -> NamedOptimizer:
        built = cls.factory(**kwargs)
        obj = object.__new__(cls)
        for f in dataclasses.fields(Optimizer):
            object.__setattr__(obj, f.name, getattr(built, f.name))
        return obj

    def __init__(self, **kwargs: Any) -> None:
        """Built by ``__new__`` (the fields are the factory's optimizer's)."""


def named(cls_name: str, factory: Callable[..., Optimizer], module: str) -> type:
    """The class ``cls_name`` building ``factory``'s optimizer."""
    doc = (
        f"MXNet's ``{cls_name}``: ``{cls_name}(**kwargs)`` is "
        f"``create({factory.__name__!r}, **kwargs)``.\n\n" + (factory.__doc__ or "")
    )
    return type(
        cls_name,
        (NamedOptimizer,),
        {"factory": staticmethod(factory), "__doc__": doc, "__module__": module},
    )
