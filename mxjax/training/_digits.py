"""The seed's task on real data: the bundled handwritten digits and a small MLP.

The seed binds ``FullyConnected(data, name='fc', num_hidden=10)`` + ``SoftmaxOutput``;
here that is ``{'fc': {'weight': (10, 64), 'bias': (10,)}}`` in MXNet's ``(out, in)``
layout (leaf names ``fc_weight`` / ``fc_bias`` for the initializer's name dispatch),
with an optional ReLU hidden layer (``fc1`` -> ``fc2``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Params

DIGITS_PATH = Path(__file__).resolve().parent.parent / "data" / "digits.npz"


class Split(NamedTuple):
    """Train and validation arrays: ``x`` float32 ``(n, 64)`` in [0, 1], ``y`` int32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_digits(val_fraction: float = 0.2, seed: int = 0) -> Split:
    """The bundled UCI digits (1,797 8x8 images), flattened, scaled to [0, 1] and split
    at random (by ``seed``) into train and validation sets.

    Raises:
      ValueError: ``val_fraction`` not in [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    with np.load(DIGITS_PATH) as d:
        x = d["images"].reshape(len(d["images"]), -1).astype(np.float32) / 16.0
        y = d["labels"].astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    val, train = perm[:n_val], perm[n_val:]
    return Split(x[train], y[train], x[val], y[val])


def batch_iterator(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int | None = 0
):
    """``epoch -> iterator of (x, y) batches`` for :func:`mxjax.fit`.

    Shuffled each epoch (by ``seed`` and the epoch; ``seed=None``: in order). The last
    batch is padded by wrapping around to the start, as MXNet's ``NDArrayIter``
    (``last_batch_handle='pad'``), so every batch has ``batch_size`` rows and the step
    compiles once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    n = len(y)

    def epoch_batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = (
            np.arange(n)
            if seed is None
            else np.random.default_rng([seed, epoch]).permutation(n)
        )
        for start in range(0, n, batch_size):
            idx = np.take(order, np.arange(start, start + batch_size), mode="wrap")
            yield x[idx], y[idx]

    return epoch_batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch with MXNet's padding of the last batch."""
    return -(-n // batch_size)


def mlp_shapes(
    in_features: int = 64, hidden: int = 0, num_classes: int = 10, bias: bool = True
) -> dict[str, dict[str, tuple[int, ...]]]:
    """Parameter shapes: the seed's ``fc`` (``hidden=0``), or ``fc1`` -> ReLU ->
    ``fc2``; ``bias=False`` is ``FullyConnected(no_bias=True)`` (only 2-D weights, for
    optimizers such as GroupAdaGrad)."""
    if hidden < 0:
        raise ValueError(f"hidden must be >= 0, got {hidden!r}")

    def layer(out: int, inp: int) -> dict[str, tuple[int, ...]]:
        return (
            {"weight": (out, inp), "bias": (out,)} if bias else {"weight": (out, inp)}
        )

    if hidden == 0:
        return {"fc": layer(num_classes, in_features)}
    return {"fc1": layer(hidden, in_features), "fc2": layer(num_classes, hidden)}


def mlp_apply(params: Params, x: jax.Array) -> jax.Array:
    """Logits of the model built by :func:`mlp_shapes` (weights in ``(out, in)``)."""

    def dense(layer: dict[str, jax.Array], h: jax.Array) -> jax.Array:
        out = h @ layer["weight"].T
        return out + layer["bias"][None, :] if "bias" in layer else out

    if "fc" in params:
        return dense(params["fc"], x)
    return dense(params["fc2"], jax.nn.relu(dense(params["fc1"], x)))


def softmax_loss(params: Params, batch: tuple[jax.Array, jax.Array]):
    """MXNet's ``SoftmaxOutput``: cross-entropy *summed* over the batch (pair it with
    ``rescale_grad=1/batch_size``, as ``Module.init_optimizer`` does), and the batch's
    mean cross-entropy ``ce`` and accuracy ``acc`` as aux metrics."""
    x, y = batch
    logits = mlp_apply(params, x)
    logp = jax.nn.log_softmax(logits)
    ce = -jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    acc = jnp.mean(jnp.argmax(logits, axis=1) == y)
    return jnp.sum(ce), {"ce": jnp.mean(ce), "acc": acc}


def accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of ``x`` classified as ``y``."""
    return jnp.mean(jnp.argmax(mlp_apply(params, x), axis=1) == y)
