"""``Uniform`` and ``Normal``: i.i.d. draws from ``jax.random`` [Q13: not MXNet's RNG]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._validate import F32_MAX, real
from ._base import Initializer, NamedInit, Shape, check_fits


class Uniform(Initializer):
    r"""MXNet's ``Uniform(scale=0.07)``: :math:`w \sim U[-\mathrm{scale}, \mathrm{scale}]`.

    Unlike ``jax.nn.initializers.uniform(scale)`` (which samples ``[0, scale)``), the range
    is symmetric, as MXNet's. Values are drawn directly in ``dtype`` (no upcast).

    Args:
      scale: half-width of the range; ``>= 0`` and at most half of float32's largest
        value (the draw spans ``2 * scale``).

    >>> Uniform(0.1)(jax.random.key(42), (2, 3))  # doctest: +SKIP
    """

    def __init__(self, scale: float = 0.07) -> None:
        super().__init__(scale=scale)
        self.scale = real(
            "scale", scale, lo=0.0, hi=F32_MAX / 2, note="the draw spans 2 * scale in float32"
        )

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del global_init
        check_fits(repr(self), name, 2 * self.scale, dtype)  # the span is 2 * scale
        return jax.random.uniform(key, shape, dtype, -self.scale, self.scale)


class Normal(Initializer):
    r"""MXNet's ``Normal(sigma=0.01)``: :math:`w \sim \mathcal{N}(0, \sigma^2)`.

    Args:
      sigma: standard deviation; ``>= 0`` and at most an eighth of float32's largest
        value (float32 normal draws reach ``|z| ~ 5.42``).
    """

    def __init__(self, sigma: float = 0.01) -> None:
        super().__init__(sigma=sigma)
        self.sigma = real(
            "sigma",
            sigma,
            lo=0.0,
            hi=F32_MAX / 8,
            note="float32 normal draws reach |z| ~ 5.42 and sigma * z must stay finite",
        )

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del global_init
        check_fits(repr(self), name, 8 * self.sigma, dtype)  # draws reach |z| ~ 5.42
        return jax.random.normal(key, shape, dtype) * jnp.asarray(self.sigma, dtype)
