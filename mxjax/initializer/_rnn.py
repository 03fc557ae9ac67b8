"""``LSTMBias`` and ``FusedRNN``: recurrent-layer initializers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import jax
import jax.numpy as jnp

from .._validate import F32_MAX, choice, flag, instance, integer, real
from ._base import Initializer, NamedInit, Shape, leaf_key

Mode = Literal["rnn_relu", "rnn_tanh", "lstm", "gru"]
GATES: dict[str, tuple[str, ...]] = {
    "rnn_relu": ("",),
    "rnn_tanh": ("",),
    "lstm": ("_i", "_f", "_c", "_o"),
    "gru": ("_r", "_z", "_o"),
}


class LSTMBias(Initializer):
    r"""MXNet's ``LSTMBias(forget_bias=1.0)``: zeros except the forget gate.

    With ``H = int(shape[0] / 4)`` and the gate order ``i, f, c, o``: ``w = 0``,
    ``w[H:2H] = forget_bias``. Only the *weight* rule does this: through name dispatch
    (``init_named`` / ``init_params`` on a ``*_bias`` name) the result is zeros, as MXNet
    (use it as ``per_param`` / a flax ``bias_init`` instead).

    Args:
      forget_bias: the forget-gate bias; finite.
    """

    def __init__(self, forget_bias: float = 1.0) -> None:
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = real("forget_bias", forget_bias, lo=-F32_MAX, hi=F32_MAX)

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        del key, global_init
        if len(shape) < 1:
            raise ValueError(
                f"LSTMBias needs at least 1 dimension for {name or 'a parameter'}, got {shape}"
            )
        h = int(shape[0] / 4)
        return jnp.zeros(shape, dtype).at[h : 2 * h].set(self.forget_bias)


def fused_layout(
    size: int, num_hidden: int, num_layers: int, mode: str, bidirectional: bool
) -> Iterator[tuple[str, Shape]]:
    """Names and shapes of the pieces of a fused RNN ``parameters`` vector, in order.

    All weights, then all biases (reference D.6)::

        for layer, dir in l/r: i2h{gate}_weight (H, I or b·H) per gate, h2h{gate}_weight (H, H)
        for layer, dir in l/r: i2h{gate}_bias (H,) per gate, h2h{gate}_bias (H,)

    The input size ``I`` is recovered from ``size`` as MXNet does.

    Raises:
      ValueError: ``size`` does not fit any input size.
    """
    b, m, h, n = 1 + bool(bidirectional), len(GATES[mode]), num_hidden, num_layers
    i = size // b // h // m - (n - 1) * (h + b * h + 2) - h - 2
    total = (i + h + 2) * h * m * b + (n - 1) * m * h * (h + b * h + 2) * b
    if i < 1 or total != size:
        raise ValueError(
            f"a fused {mode} parameter vector of size {size} does not fit num_hidden={h}, "
            f"num_layers={n}, bidirectional={bool(bidirectional)} for any input size "
            f"(size must be (I + H + 2)·H·m·b + (L−1)·m·H·(b·H + H + 2)·b)"
        )
    dirs = ("l", "r")[:b]
    for layer in range(n):
        for d in dirs:
            for g in GATES[mode]:
                yield f"{d}{layer}_i2h{g}_weight", (h, i if layer == 0 else b * h)
            for g in GATES[mode]:
                yield f"{d}{layer}_h2h{g}_weight", (h, h)
    for layer in range(n):
        for d in dirs:
            for kind in ("i2h", "h2h"):
                for g in GATES[mode]:
                    yield f"{d}{layer}_{kind}{g}_bias", (h,)


class FusedRNN(Initializer):
    r"""MXNet's ``FusedRNN(init, num_hidden, num_layers, mode, bidirectional=False,
    forget_bias=1.0)``: initializes the packed 1-D ``parameters`` vector of a fused RNN.

    The vector is unpacked into per-gate pieces (:func:`fused_layout`), each named
    ``{l|r}{layer}_{i2h|h2h}{gate}_{weight|bias}``. Each piece gets its own key
    (``fold_in(key, crc32(piece name))``) and:

    * for ``lstm``, every piece ending ``_f_bias`` is ``forget_bias``. That is both the
      i2h and the h2h forget bias, so the effective forget bias is ``2·forget_bias``
      [Q30];
    * otherwise ``init.init_named(piece, ...)``, with name dispatch (weights by ``init``'s
      rule, other biases 0), or, if ``init`` is None, the *global* initializer's.

    Sub-initializers see per-gate shapes, so Xavier's fans are those of ``(H, I)``, not
    ``(m·H, I)`` [Q31]. The pieces are then repacked.

    Args:
      init: the initializer of the pieces (an Initializer, a registry name or a ``dumps()``
        JSON string), or None to use the global initializer: ``init_params``'s ``init``
        when this is given through ``init_params(per_param=...)``, or the
        ``global_init=`` of :meth:`init_weight`.
      num_hidden: hidden size ``H``, an int ``>= 1``.
      num_layers: number of layers ``L``, an int ``>= 1``.
      mode: ``"rnn_relu"``, ``"rnn_tanh"``, ``"lstm"`` (gates i, f, c, o) or ``"gru"``
        (gates r, z, o).
      bidirectional: two directions (``l``, ``r``) per layer.
      forget_bias: finite; used for ``lstm`` only.

    Raises:
      ValueError: at construction for a bad argument; at call time for a shape that is not
        1-D or whose size fits no input size, or when ``init`` is None and there is no
        global initializer.
    """

    def __init__(
        self,
        init: Initializer | str | None,
        num_hidden: int,
        num_layers: int,
        mode: Mode,
        bidirectional: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        if isinstance(init, str):
            from ._create import create

            init = create(init)
        if init is not None:
            instance("init", init, Initializer, "an Initializer, a str or None")
        super().__init__(
            init=init.dumps() if init is not None else None,
            num_hidden=num_hidden,
            num_layers=num_layers,
            mode=mode,
            bidirectional=bidirectional,
            forget_bias=forget_bias,
        )
        self.init = init
        self.num_hidden = integer("num_hidden", num_hidden, lo=1)
        self.num_layers = integer("num_layers", num_layers, lo=1)
        self.mode = choice("mode", mode, tuple(GATES))
        self.bidirectional = flag("bidirectional", bidirectional)
        self.forget_bias = real("forget_bias", forget_bias, lo=-F32_MAX, hi=F32_MAX)

    def _init_weight(
        self,
        name: str,
        key: jax.Array,
        shape: Shape,
        dtype: jnp.dtype,
        global_init: NamedInit | None,
    ) -> jax.Array:
        if len(shape) != 1:
            raise ValueError(
                f"FusedRNN needs a 1-D parameter vector for {name or 'a parameter'}, got {shape}"
            )
        sub = self.init if self.init is not None else global_init
        if sub is None or sub is self:
            raise ValueError(
                "FusedRNN(init=None) falls back to the global initializer, and there is "
                "none: give init=..., or use init_params(global_init, key, shapes, "
                "per_param={name: FusedRNN(None, ...)})"
            )
        pieces = []
        for piece, piece_shape in fused_layout(
            shape[0], self.num_hidden, self.num_layers, self.mode, self.bidirectional
        ):
            if self.mode == "lstm" and piece.endswith("_f_bias"):
                arr = jnp.full(piece_shape, self.forget_bias, dtype)
            else:
                arr = sub.init_named(
                    piece,
                    leaf_key(key, piece),
                    piece_shape,
                    dtype,
                    global_init=global_init,
                )
            pieces.append(arr.reshape(-1))
        return jnp.concatenate(pieces)
