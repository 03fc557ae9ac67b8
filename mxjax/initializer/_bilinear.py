"""``Bilinear``: the upsampling kernel of MXNet's ``Deconvolution`` layers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Initializer, NamedInit, Shape


class Bilinear(Initializer):
    r"""MXNet's ``Bilinear()``: a bilinear-interpolation kernel for upsampling.

    For the flat (C-order) index ``i`` over ``shape`` (``ndim >= 4``, ``W = shape[3]``,
    ``H = shape[2]``): ``x = i % W``, ``y = (i // W) % H``, and

    .. math:: f = \lceil W/2 \rceil,\quad c = \frac{2f - 1 - (f \bmod 2)}{2f},\quad
       w_i = (1 - |x/f - c|)(1 - |y/f - c|)

    [Q29] The same kernel fills every ``(out, in)`` channel pair (not only the diagonal),
    and ``f`` and ``c`` come from the width alone, even for the ``y`` factor. Values are
    computed in float64, rounded to float32 (as MXNet), then cast to ``dtype``. The key is
    unused.

    Raises:
      ValueError: at call time, if ``ndim < 4``.
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
        del key, global_init
        if len(shape) < 4:
            raise ValueError(
                f"Bilinear needs a 4-D (out, in, H, W) weight for {name or 'a parameter'}, got {shape}"
            )
        width, height = shape[3], shape[2]
        f = math.ceil(width / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        i = np.arange(math.prod(shape))
        x, y = i % width, (i // width) % height
        w = (1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))
        return jnp.asarray(w.astype(np.float32).reshape(shape), dtype)
