"""``Zero``, ``One`` and ``Constant``: deterministic fills."""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._validate import F32_MAX, F32_TINY, fail, real
from ._base import Initializer, NamedInit, Shape, check_fits


class Zero(Initializer):
    """MXNet's ``Zero`` (registry names ``zero``, ``zeros``): the weight rule is ``w = 0``.

    >>> Zero()(jax.random.key(0), (2, 3))  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del name, key, global_init
        return jnp.zeros(shape, dtype)


class One(Initializer):
    """MXNet's ``One`` (registry names ``one``, ``ones``): the weight rule is ``w = 1``."""

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del name, key, global_init
        return jnp.ones(shape, dtype)


class Constant(Initializer):
    """MXNet's ``Constant(value)``: ``w[:] = value``.

    Args:
      value: a scalar, or an array broadcast (numpy rules) to the parameter's shape.
        Must be numeric. ``dumps()`` writes an array value as a nested list, as MXNet.

    Raises:
      TypeError: at construction, if ``value`` is not numeric.
      ValueError: at construction, if ``value`` holds a NaN or inf (MXNet accepts
        those and fills every parameter with them); at call time, if ``value`` does
        not broadcast to the shape.
    """

    def __init__(self, value: ArrayLike) -> None:
        arr = np.asarray(value)
        rule = "a finite number or array of them"
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            fail("value", rule, value, f"dtype {arr.dtype}", TypeError)
        if arr.dtype != np.bool_ and not np.all(np.isfinite(arr)):
            fail("value", rule, value, "a NaN or inf would fill every parameter")
        if np.issubdtype(arr.dtype, np.floating):  # each element must survive float32
            mag = np.abs(arr.astype(np.float64))
            bad = (mag > F32_MAX) | ((mag != 0) & (mag < F32_TINY))
            if bad.any():
                real("value", float(arr[bad][0]))
        super().__init__(value=value)
        self.value = arr

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del key, global_init
        try:
            fits = np.broadcast_shapes(self.value.shape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"Constant value of shape {self.value.shape} cannot be broadcast to "
                f"{name or 'the parameter'}'s shape {shape}"
            )
        if self.value.size and np.issubdtype(self.value.dtype, np.number):
            check_fits(repr(self), name, float(np.abs(self.value).max()), dtype)
        return jnp.broadcast_to(jnp.asarray(self.value, dtype), shape)

    def dumps(self) -> str:
        kwargs: dict[str, Any] = dict(self._kwargs)
        if not np.isscalar(kwargs["value"]):
            kwargs["value"] = self.value.tolist()
        return json.dumps([type(self).__name__.lower(), kwargs])
