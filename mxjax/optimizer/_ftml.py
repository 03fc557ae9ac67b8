r"""FTML: Follow The Moving Leader (MXNet ``FTML``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._validate import real as check_range
from ._adam import check_betas
from ._base import from_rule
from ._contract import Hyper, Optimizer, Rule, Slots
from ._kernel_math import pow_f32


def ftml(
    learning_rate: float | None = None,
    beta1: float = 0.6,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    **common: Any,
) -> Optimizer:
    r"""Follow The Moving Leader (Zheng & Kwok, 2017), as MXNet 1.9.1's ``ftml_update``.

    .. math::

        \hat g &= \mathrm{clip}_c(\mathrm{rescale\_grad}\cdot g + \lambda w) \\
        v &\leftarrow \beta_2 v + (1-\beta_2)\hat g^2 \\
        d_t &= \frac{1-\beta_1^t}{\eta}\left(\sqrt{\frac{v}{1-\beta_2^t}}
               + \epsilon\right) \\
        z &\leftarrow \beta_1 z + (1-\beta_1)\hat g - (d_t - \beta_1 d)\,w \\
        d &\leftarrow d_t, \qquad w \leftarrow -z / d_t

    The state is ``(d, v, z)``, zeros in the weight's dtype. The weight is *set* from
    ``z`` and ``d`` rather than incremented.

    Quirks reproduced:

    * ε is added *outside* the square root, after bias-correcting ``v``; the kernel
      uses :math:`(1-\beta_1)\hat g` in ``z`` (MXNet's op docstring says
      :math:`(1-\beta_1^t)`, which is wrong [Q40]).
    * :math:`\beta^t` is computed in float32 as the C++ kernel does (``powf``), with
      ``t`` the per-parameter count from ``begin_num_update`` [Q6].
    * Weight decay is *inside* the clip [Q16]; ``clip_gradient`` follows the fused-op
      convention [Q7] (0 means no clipping).
    * The learning rate divides: η = 0 (an ``lr_mult`` of 0, or a schedule reaching 0)
      gives NaN weights, as in MXNet. A float ``learning_rate`` must be > 0.

    Args:
      learning_rate: η > 0; ``None`` means 0.01 (or the scheduler's; FTML does not
        override a scheduler's ``base_lr``).
      beta1: β1 in [0, 1) (0.6).
      beta2: β2 in [0, 1) (0.999).
      epsilon: ε > 0 (1e-8).
      **common: the base arguments.

    Raises:
      ValueError: a β outside [0, 1), ``epsilon`` <= 0 or ``learning_rate`` <= 0.

    References:
      Zheng & Kwok, `Follow the Moving Leader in Deep Learning
      <http://proceedings.mlr.press/v70/zheng17a/zheng17a.pdf>`_, ICML 2017.
    """
    check_betas(beta1=beta1, beta2=beta2)
    check_range("epsilon", epsilon, lo=0.0, lo_open=True)
    if learning_rate is not None and not callable(learning_rate):
        check_range("learning_rate", learning_rate, lo=0.0, lo_open=True, none_ok=True)

    def kernel(w: jax.Array, g: jax.Array, s: Slots, h: Hyper) -> tuple[jax.Array, Slots]:
        d, v, z = s
        dt = w.dtype
        # wd_mode="raw": the kernel always adds wd*w, even for wd = 0, so a non-finite
        # weight turns the gradient into NaN exactly as in MXNet's ftml_update.
        g = jnp.asarray(h.rescale_grad, dt) * g + h.wd * w
        g = g if h.clip is None else jnp.clip(g, -h.clip, h.clip)
        b1, b2 = jnp.asarray(beta1, dt), jnp.asarray(beta2, dt)
        v = b2 * v + (1 - b2) * (g * g)
        c1 = (1 - pow_f32(beta1, h.t)).astype(dt)
        c2 = (1 - pow_f32(beta2, h.t)).astype(dt)
        d_t = c1 / h.lr * (jnp.sqrt(v / c2) + jnp.asarray(epsilon, dt))
        z = b1 * z + (1 - b1) * g - (d_t - b1 * d) * w
        return -z / d_t, (d_t, v, z)

    return from_rule(
        Rule(kernel, slots=("d", "v", "z"), wd_mode="raw", elementwise=True),
        name="ftml",
        learning_rate=learning_rate,
        hyperparams={"beta1": beta1, "beta2": beta2, "epsilon": epsilon},
        **common,
    )
