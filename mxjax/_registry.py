"""Name -> factory registries (MXNet's ``register`` / ``create``), one per package."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A case-insensitive map from MXNet registry names to factories.

    ``create(name, **kwargs)`` calls the factory registered under ``name.lower()``;
    an unknown name raises ``ValueError`` listing every valid name.
    """

    def __init__(self, kind: str, entries: dict[str, F] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}
        for name, factory in (entries or {}).items():
            self._entries[name.lower()] = factory

    def register(self, name: str | F, factory: F | None = None) -> Any:
        """Register ``factory`` under ``name``; usable as ``register(name, f)`` or as a
        decorator ``@register("name")`` / ``@register`` (then the function's name is used).

        Re-registering a name warns and overrides, as in MXNet.
        """
        if callable(name) and factory is None:
            return self.register(name.__name__, name)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty str, got {name!r}")
        if factory is None:
            return lambda f: self.register(name, f)
        key = name.lower()
        if key in self._entries and self._entries[key] is not factory:
            warnings.warn(
                f"{self.kind} {key!r} is already registered; overriding it",
                UserWarning,
                stacklevel=2,
            )
        self._entries[key] = factory
        return factory

    def get(self, name: str) -> F:
        """The factory registered under ``name`` (case-insensitive)."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a str, got {name!r}")
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise ValueError(
                f"Cannot find {self.kind} {name!r}; valid names are: "
                + ", ".join(self.names())
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """``create("Adam", learning_rate=0.1)`` is ``adam(learning_rate=0.1)``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
