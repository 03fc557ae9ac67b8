"""``Mixed``: route parameters to initializers by regular expression."""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._validate import fail, instance
from ._base import NamedInit


class Mixed:
    """MXNet's ``Mixed(patterns, initializers)``.

    The patterns are tried in order and the first whose ``re.match`` succeeds chooses the
    initializer. ``re.match`` is anchored at the *start* of the name, so ``"bias"`` does not
    match ``"fc1_bias"`` (use ``".*bias"``). The chosen initializer then still applies its
    name dispatch: ``Mixed(["fc"], [Constant(2)])`` gives ``fc1_bias`` 0, not 2 [Q32].
    Like MXNet's, it is not an ``Initializer`` subclass and needs names: use it with
    :func:`init_params` or :meth:`init_named`.

    Args:
      patterns: regular expressions (``re`` syntax).
      initializers: one initializer (or ``Load`` / ``Mixed``) per pattern.

    Raises:
      TypeError: ``patterns`` or ``initializers`` is not a list (a str is refused:
        it would be read as one pattern per character), or holds a wrong type.
      ValueError: the lengths differ, a pattern does not compile, or (at call time) a
        name matches no pattern.
    """

    def __init__(
        self, patterns: Sequence[str], initializers: Sequence[NamedInit]
    ) -> None:
        for what, seq in (("patterns", patterns), ("initializers", initializers)):
            if isinstance(seq, (str, bytes)):
                fail(what, "a list", seq, "a str would be one pattern per character", TypeError)
            instance(what, seq, Sequence, "a list")
        for i, p in enumerate(patterns):
            instance(f"patterns[{i}]", p, str, "a regular expression (str)")
        if len(patterns) != len(initializers):
            fail(
                "initializers",
                "a list as long as patterns",
                initializers,
                f"{len(initializers)} initializers for {len(patterns)} patterns",
            )
        self.map: list[tuple[re.Pattern[str], NamedInit]] = []
        for i, (p, init) in enumerate(zip(patterns, initializers, strict=False)):
            try:
                prog = re.compile(p)
            except re.error as e:
                fail(f"patterns[{i}]", "a valid regular expression", p, str(e))
            instance(f"initializers[{i}]", init, NamedInit, "an initializer")
            self.map.append((prog, init))

    def init_named(
        self,
        name: str,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        *,
        global_init: NamedInit | None = None,
    ) -> jax.Array:
        """The first matching initializer's ``init_named(name, ...)``."""
        for prog, init in self.map:
            if prog.match(name):
                return init.init_named(name, key, shape, dtype, global_init=global_init)
        raise ValueError(
            f"Parameter name {name!r} did not match any pattern of Mixed "
            f"{[p.pattern for p, _ in self.map]}; consider adding a '.*' pattern at the end "
            "with a default initializer"
        )

    def check_names(self, names: Sequence[str]) -> None:
        """Pass each routed initializer's ``check_names`` the names routed to it."""
        routed: dict[int, list[str]] = {}
        for name in names:
            for i, (prog, _) in enumerate(self.map):
                if prog.match(name):
                    routed.setdefault(i, []).append(name)
                    break
        for i, (_, init) in enumerate(self.map):
            check = getattr(init, "check_names", None)
            if check is not None:
                check(routed.get(i, []))

    def __call__(
        self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike | None = None
    ) -> jax.Array:
        raise TypeError(
            "Mixed routes by parameter name; use init_params(Mixed(...), key, shapes) "
            "or Mixed(...).init_named(name, key, shape, dtype)"
        )
