"""``Xavier`` and ``MSRAPrelu``: variance scaling with MXNet's fans and magnitudes."""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp

from .._validate import F32_MAX, choice, integer, real
from ._base import Initializer, NamedInit, Shape, compute_fans

RndType = Literal["uniform", "gaussian"]
FactorType = Literal["avg", "in", "out"]


def variance_scaling(
    key: jax.Array,
    shape: Shape,
    dtype: jnp.dtype,
    *,
    magnitude: float,
    factor_type: FactorType,
    rnd_type: RndType,
    in_axis: int = 1,
    out_axis: int = 0,
    name: str = "",
) -> jax.Array:
    r"""MXNet's Xavier draw, the one implementation behind ``Xavier`` and ``MSRAPrelu``.

    .. math:: c = \sqrt{\mathrm{magnitude} / f},\quad
       f = \tfrac{1}{2}(n_{in} + n_{out}) \text{ (avg)},\ n_{in} \text{ (in)},\ n_{out} \text{ (out)}

    ``uniform`` draws :math:`U[-c, c]`; ``gaussian`` draws :math:`\mathcal{N}(0, c^2)`
    (std ``c``, no truncation). Fans come from :func:`compute_fans`.
    """
    c = xavier_scale(shape, magnitude, factor_type, in_axis, out_axis, name=name)
    if rnd_type == "uniform":
        return jax.random.uniform(key, shape, dtype, -c, c)
    return jax.random.normal(key, shape, dtype) * jnp.asarray(c, dtype)


def xavier_scale(
    shape: Shape,
    magnitude: float,
    factor_type: FactorType,
    in_axis: int = 1,
    out_axis: int = 0,
    *,
    name: str = "",
) -> float:
    """``c = sqrt(magnitude / factor)`` (float64, as MXNet's ``np.sqrt``).

    Raises:
      ValueError: the shape has no fans, or the factor is 0 (a zero-size dimension;
        MXNet divides by it), naming the parameter ``name``.
    """
    what = f"parameter {name!r} of shape {shape}" if name else f"shape {shape}"
    try:
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis)
    except ValueError as e:
        raise ValueError(f"Xavier initializer cannot be applied to {what}: {e}") from None
    factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[
        factor_type
    ]
    if factor == 0:
        raise ValueError(
            f"Xavier initializer cannot be applied to {what}: factor_type="
            f"{factor_type!r} gives a factor of 0 (fan_in={fan_in}, fan_out={fan_out}: "
            "a zero-size dimension) and the scale sqrt(magnitude / factor) is undefined"
        )
    return math.sqrt(magnitude / factor)


class Xavier(Initializer):
    r"""MXNet's ``Xavier(rnd_type="uniform", factor_type="avg", magnitude=3)``.

    .. math:: c = \sqrt{\mathrm{magnitude}/f},\ w \sim U[-c, c]\ \text{or}\ \mathcal{N}(0, c^2)

    with :math:`f = (n_{in}+n_{out})/2`, :math:`n_{in}` or :math:`n_{out}`. For MXNet's
    weight layout ``(out, in, *kernel)``, :math:`n_{in} = \text{shape}[1]\cdot\prod
    \text{shape}[2:]` and :math:`n_{out} = \text{shape}[0]\cdot\prod \text{shape}[2:]`.

    Args:
      rnd_type: ``"uniform"`` or ``"gaussian"``.
      factor_type: ``"avg"``, ``"in"`` or ``"out"``.
      magnitude: finite, ``> 0``.
      in_axis: axis holding the inputs (MXNet: 1; flax ``(in, out)``/HWIO kernels: -2).
      out_axis: axis holding the outputs (MXNet: 0; flax: -1). The remaining axes form the
        receptive field. Both appear in ``dumps()`` only when not the MXNet defaults.

    Raises:
      ValueError: at construction for a bad argument; at call time for ``ndim < 2``.
    """

    def __init__(
        self,
        rnd_type: RndType = "uniform",
        factor_type: FactorType = "avg",
        magnitude: float = 3,
        *,
        in_axis: int = 1,
        out_axis: int = 0,
    ) -> None:
        kwargs = {
            "rnd_type": rnd_type,
            "factor_type": factor_type,
            "magnitude": magnitude,
        }
        self._set(kwargs, in_axis, out_axis)
        self.magnitude = real("magnitude", magnitude, lo=0.0, lo_open=True, hi=F32_MAX)
        self.rnd_type: RndType = choice(
            "rnd_type", rnd_type, ("uniform", "gaussian")
        )  # type: ignore[assignment]
        self.factor_type: FactorType = choice(
            "factor_type", factor_type, ("avg", "in", "out")
        )  # type: ignore[assignment]

    def _set(self, kwargs: dict, in_axis: int, out_axis: int) -> None:
        self.in_axis = integer("in_axis", in_axis, lo=-(2**31))
        self.out_axis = integer("out_axis", out_axis, lo=-(2**31))
        if self.in_axis == self.out_axis:
            raise ValueError(f"in_axis and out_axis must differ, both are {in_axis}")
        if (in_axis, out_axis) != (1, 0):
            kwargs = {**kwargs, "in_axis": in_axis, "out_axis": out_axis}
        Initializer.__init__(self, **kwargs)

    def scale(self, shape: Shape) -> float:
        """MXNet's ``scale = sqrt(magnitude / factor)`` for a weight of ``shape``."""
        return xavier_scale(
            tuple(shape), self.magnitude, self.factor_type, self.in_axis, self.out_axis
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
        if len(shape) < 2:
            raise ValueError(
                f"Xavier initializer cannot be applied to vector {name or shape}. "
                "It requires at least 2D."
            )
        return variance_scaling(
            key,
            shape,
            dtype,
            magnitude=self.magnitude,
            factor_type=self.factor_type,
            rnd_type=self.rnd_type,
            in_axis=self.in_axis,
            out_axis=self.out_axis,
            name=name,
        )


class MSRAPrelu(Xavier):
    r"""MXNet's ``MSRAPrelu(factor_type="avg", slope=0.25)`` (He et al. 2015).

    ``Xavier("gaussian", factor_type, magnitude=2 / (1 + slope**2))``: for the default
    slope the magnitude is 1.88235…; ``dumps()`` shows only ``factor_type`` and ``slope``.

    Args:
      factor_type: ``"avg"``, ``"in"`` or ``"out"``.
      slope: the PReLU slope; finite.
      in_axis, out_axis: as :class:`Xavier`.

    References:
      He et al., `Delving Deep into Rectifiers <https://arxiv.org/abs/1502.01852>`_, 2015.
    """

    def __init__(
        self,
        factor_type: FactorType = "avg",
        slope: float = 0.25,
        *,
        in_axis: int = 1,
        out_axis: int = 0,
    ) -> None:
        s = real("slope", slope, lo=-F32_MAX, hi=F32_MAX)
        self._set({"factor_type": factor_type, "slope": slope}, in_axis, out_axis)
        self.magnitude = 2.0 / (1 + s**2)
        self.rnd_type = "gaussian"
        self.factor_type = choice(
            "factor_type", factor_type, ("avg", "in", "out")
        )  # type: ignore[assignment]
        self.slope = s
