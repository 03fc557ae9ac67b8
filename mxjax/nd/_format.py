"""Constants of MXNet's NDArray list-file format (reference D.9) and its error type."""

from __future__ import annotations

import numpy as np

LIST_MAGIC = 0x112
"""``kMXAPINDArrayListMagic``: the first u64 of every ``.params`` file."""
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
MAX_NDIM = 32
"""The largest ``ndim`` accepted when reading (MXNet's ``TShape`` limit is far below numpy's 64)."""
CPU_DEVICES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}


class MXNetFileError(ValueError):
    """A file or buffer is not a valid MXNet NDArray file: truncated, corrupted or hostile.

    Every failure of :func:`mxjax.nd.load` on bad *content* raises this one type (a
    ``ValueError`` subclass); ``OSError`` is still raised when the file cannot be opened.
    """


def _bfloat16() -> np.dtype | None:
    try:
        import ml_dtypes  # a dependency of jax; optional here
    except ImportError:  # pragma: no cover - ml_dtypes ships with jaxlib
        return None
    return np.dtype(ml_dtypes.bfloat16)


_BF16 = _bfloat16()

TYPE_FLAGS: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
}
"""mshadow ``TypeFlag`` codes that MXNet 1.9.1's Python side maps (plus 12, bfloat16)."""
if _BF16 is not None:
    TYPE_FLAGS[12] = _BF16

FLAG_OF_DTYPE: dict[np.dtype, int] = {
    dt.newbyteorder("="): f for f, dt in TYPE_FLAGS.items()
}
