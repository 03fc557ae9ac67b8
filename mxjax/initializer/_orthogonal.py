"""``Orthogonal``: a scaled (semi-)orthogonal matrix from an SVD."""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp

from .._validate import F32_MAX, choice, real
from ._base import Initializer, NamedInit, Shape


class Orthogonal(Initializer):
    r"""MXNet's ``Orthogonal(scale=1.414, rand_type="uniform")`` (Saxe et al. 2013).

    With ``nout = shape[0]`` and ``nin = prod(shape[1:])``: draw ``A`` of shape
    ``(nout, nin)`` from :math:`U[-1, 1]` (``"uniform"``) or :math:`\mathcal{N}(0, 1)`
    (``"normal"``), take ``U, _, V = svd(A, full_matrices=False)`` and return
    ``scale · (U if U.shape == A.shape else V).reshape(shape)``: orthonormal columns when
    ``nin <= nout``, orthonormal rows otherwise. The default scale is 1.414, not √2.
    The SVD runs in float32 and the result is cast to ``dtype``.

    Args:
      scale: finite, ``>= 0``.
      rand_type: ``"uniform"`` or ``"normal"``.

    Raises:
      ValueError: at construction for a bad argument; at call time for a 0-d shape.

    References:
      Saxe et al., `Exact solutions to the nonlinear dynamics of learning in deep linear
      neural networks <https://arxiv.org/abs/1312.6120>`_, 2013.
    """

    def __init__(
        self, scale: float = 1.414, rand_type: Literal["uniform", "normal"] = "uniform"
    ) -> None:
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale = real("scale", scale, lo=0.0, hi=F32_MAX)
        self.rand_type = choice("rand_type", rand_type, ("uniform", "normal"))

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del global_init
        if len(shape) < 1:
            raise ValueError(
                f"Orthogonal needs at least 1 dimension for {name or 'a parameter'}, got {shape}"
            )
        nout, nin = shape[0], math.prod(shape[1:])
        if self.rand_type == "uniform":
            tmp = jax.random.uniform(key, (nout, nin), jnp.float32, -1.0, 1.0)
        else:
            tmp = jax.random.normal(key, (nout, nin), jnp.float32)
        u, _, v = jnp.linalg.svd(tmp, full_matrices=False)
        res = u if u.shape == tmp.shape else v
        return (self.scale * res).reshape(shape).astype(dtype)
