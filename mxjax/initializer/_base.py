"""The initializer base class, MXNet's name dispatch, fans and argument checks.

An :class:`Initializer` is a ``jax.nn.initializers`` initializer
(``init(key, shape, dtype=jnp.float32) -> Array``) that applies its *weight* rule, plus
MXNet's name dispatch (:meth:`Initializer.init_named`, reference D.2 / Q27) used by
:func:`mxjax.initializer.init_params`.
"""

from __future__ import annotations

import json
import math
import operator
import zlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

Shape = tuple[int, ...]

SUFFIX_RULES: tuple[tuple[str, str | float], ...] = (
    ("weight", "weight"),
    ("bias", 0.0),
    ("gamma", 1.0),
    ("beta", 0.0),
    ("min", 0.0),
    ("max", 1.0),
    ("moving_mean", 0.0),
    ("moving_var", 1.0),
    ("moving_inv_var", 0.0),
    ("moving_avg", 0.0),
)
"""MXNet's suffix dispatch, first match wins [Q27]: the ``InitDesc`` order (weight, bias,
gamma, beta, min, max), then the BatchNorm aux states of the legacy path (D.3)."""


def name_rule(name: str) -> str | float:
    """The rule MXNet applies to a parameter called ``name``: ``"weight"`` or a constant.

    Raises:
      ValueError: no suffix matches (MXNet's "Unknown initialization pattern").
    """
    for suffix, rule in SUFFIX_RULES:
        if name.endswith(suffix):
            return rule
    raise ValueError(
        f"Unknown initialization pattern for {name!r}: the name must end with one of "
        + ", ".join(s for s, _ in SUFFIX_RULES)
        + " (MXNet's name dispatch); route it with Mixed or init_params(per_param=...)"
    )


def leaf_key(key: jax.Array, name: str) -> jax.Array:
    """The key of parameter ``name``: ``fold_in(key, crc32(name))`` (stable across runs)."""
    return jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")))


def as_shape(shape: Sequence[int] | int) -> Shape:
    """``shape`` as a tuple of non-negative ints."""
    if isinstance(shape, int):
        shape = (shape,)
    out = tuple(operator.index(d) for d in shape)
    if any(d < 0 for d in out):
        raise ValueError(f"shape must have non-negative dimensions, got {out}")
    return out


def as_dtype(dtype: DTypeLike | None) -> jnp.dtype:
    return jnp.dtype(jnp.float32 if dtype is None else dtype)


def check_fits(init: str, name: str, reach: float, dtype: jnp.dtype) -> None:
    """Refuse to draw values reaching ``reach`` (or a span that wide) in a float
    ``dtype`` that overflows there (``Uniform(1e5)`` in float16 would give inf)."""
    if jnp.issubdtype(dtype, jnp.floating) and reach > float(jnp.finfo(dtype).max):
        raise ValueError(
            f"{init} cannot initialize {name or 'a parameter'} in {dtype}: its values "
            f"reach {reach:g}, beyond {dtype}'s largest {float(jnp.finfo(dtype).max):g}"
        )


def compute_fans(shape: Shape, in_axis: int = 1, out_axis: int = 0) -> tuple[int, int]:
    """``(fan_in, fan_out)``: ``shape[in_axis]`` / ``shape[out_axis]`` times the product of
    the other axes (the receptive field).

    With MXNet's layout ``(out, in, *kernel)`` (the defaults) this is MXNet's
    ``fan_in = shape[1]·prod(shape[2:])``, ``fan_out = shape[0]·prod(shape[2:])``; flax's
    ``(in, out)`` / HWIO layout uses ``in_axis=-2, out_axis=-1``.

    Raises:
      ValueError: ``ndim < 2`` or the two axes coincide.
    """
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"fans need a shape with at least 2 dimensions, got {shape}")
    try:
        i, o = range(nd)[in_axis], range(nd)[out_axis]
    except IndexError:
        raise ValueError(
            f"in_axis={in_axis} / out_axis={out_axis} out of range for shape {shape}"
        ) from None
    if i == o:
        raise ValueError(f"in_axis and out_axis must differ, both are axis {i}")
    field = math.prod(d for a, d in enumerate(shape) if a not in (i, o))
    return shape[i] * field, shape[o] * field


@runtime_checkable
class NamedInit(Protocol):
    """Anything :func:`init_params` can drive: an :class:`Initializer`, ``Load`` or ``Mixed``."""

    def init_named(
        self,
        name: str,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        *,
        global_init: Initializer | None = None,
    ) -> jax.Array: ...


class Initializer:
    """Base class of MXNet's initializers (``mx.init.Initializer``).

    * ``init(key, shape, dtype=jnp.float32)`` applies the *weight* rule, whatever the
      parameter is called (like Gluon [Q28]); it is a ``jax.nn.initializers`` initializer.
    * ``init.init_named(name, key, shape, dtype)`` applies MXNet's name dispatch [Q27]:
      ``*weight`` -> the weight rule, ``*bias``/``*beta``/``*min`` -> 0, ``*gamma``/``*max``
      -> 1, then ``*moving_mean``/``*moving_inv_var``/``*moving_avg`` -> 0 and
      ``*moving_var`` -> 1; any other name raises ``ValueError``.
    * ``init.dumps()`` is MXNet's ``json.dumps([class name lower-cased, ctor kwargs])``.

    Subclasses implement ``_init_weight(name, key, shape, dtype, global_init)``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} has no weight rule")

    def __call__(
        self,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        out_sharding: Any = None,
    ) -> jax.Array:
        """The weight rule on ``shape`` (``jax.nn.initializers`` signature).

        ``out_sharding``, if given, is applied with ``jax.sharding.reshard``.
        """
        out = self.init_weight(key, shape, dtype)
        if out_sharding is not None:
            out = jax.sharding.reshard(out, out_sharding)
        return out

    def init_weight(
        self,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        *,
        name: str = "",
        global_init: NamedInit | None = None,
    ) -> jax.Array:
        """The weight rule (MXNet's ``_init_weight``), told the parameter's ``name`` and the
        global initializer (used by ``FusedRNN(init=None)``)."""
        return self._init_weight(
            name, key, as_shape(shape), as_dtype(dtype), global_init
        )

    def init_named(
        self,
        name: str,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        *,
        global_init: NamedInit | None = None,
    ) -> jax.Array:
        """MXNet's ``init(InitDesc(name), arr)``: name dispatch, then the weight rule or a
        constant [Q27]. ``global_init`` defaults to ``self`` (as MXNet sets
        ``desc.global_init``)."""
        rule = name_rule(name)
        shape_t, dt = as_shape(shape), as_dtype(dtype)
        if rule == "weight":
            return self._init_weight(name, key, shape_t, dt, global_init or self)
        return jnp.full(shape_t, rule, dt)

    def dumps(self) -> str:
        """``json.dumps([class name lower-cased, ctor kwargs])``, as MXNet."""
        return json.dumps([type(self).__name__.lower(), self._kwargs])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return type(self) is type(other) and self.dumps() == other.dumps()

    def __hash__(self) -> int:
        return hash((type(self), self.dumps()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"
