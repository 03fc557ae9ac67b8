"""Write MXNet's ``.params`` / NDArray list files (``mx.nd.save``) with numpy alone."""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._files import atomic_write
from ._format import FLAG_OF_DTYPE, LIST_MAGIC, V2_MAGIC


def _record(name: str, value: Any) -> bytes:
    arr = np.asarray(value)
    flag = FLAG_OF_DTYPE.get(arr.dtype.newbyteorder("="))
    if flag is None:
        raise TypeError(
            f"array {name}: dtype {arr.dtype} cannot be saved; supported: "
            + ", ".join(sorted(str(d) for d in FLAG_OF_DTYPE))
        )
    if arr.ndim == 0:
        raise ValueError(
            f"array {name}: 0-d arrays cannot be stored in MXNet's V2 format "
            "(ndim 0 means 'none'); reshape it to (1,)"
        )
    if arr.size == 0:
        raise ValueError(
            f"array {name}: zero-size shape {arr.shape} means 'unknown' to MXNet 1.9.1"
        )
    head = struct.pack("<Iii", V2_MAGIC, 0, arr.ndim)
    head += struct.pack(f"<{arr.ndim}q", *arr.shape)
    head += struct.pack("<iii", 1, 0, flag)  # cpu(0), dtype code
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return head + np.ascontiguousarray(le).tobytes()


def save_tobuffer(data: Mapping[str, Any] | Sequence[Any] | Any) -> bytes:
    """Encode ``data`` as MXNet's NDArray file format (V2 records, cpu(0) context).

    A mapping is saved with its names (dict iteration order); a list or tuple without
    names; a single array as a one-element list, as ``mx.nd.save`` does.
    """
    if isinstance(data, Mapping):
        names = list(data.keys())
        for key in names:
            if not isinstance(key, str):
                raise TypeError(f"array names must be str, got {key!r}")
        values = [data[key] for key in names]
    elif isinstance(data, (list, tuple)):
        names, values = [], list(data)
    else:
        names, values = [], [data]
    labels = names or [str(i) for i in range(len(values))]
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(values))]
    parts += [_record(lab, v) for lab, v in zip(labels, values, strict=False)]
    parts.append(struct.pack("<Q", len(names)))
    for key in names:
        raw = key.encode("utf-8")
        parts.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(parts)


def save(
    path: str | os.PathLike[str], data: Mapping[str, Any] | Sequence[Any] | Any
) -> None:
    """Write ``data`` to ``path`` in MXNet's ``.params`` format (MXNet's ``mx.nd.save``).

    Args:
      path: the file to write.
      data: a ``dict`` name -> array (a "dict file", as Module checkpoints), a list/tuple of
        arrays (a "list file") or one array. Arrays may be numpy or JAX arrays of float16/32/64,
        uint8, int8/32/64, bool or bfloat16, with ``ndim >= 1`` and no zero-size dimension.

    The file is written to a temporary file in the same directory, flushed, ``fsync``-ed
    and renamed over ``path``: a write that fails part-way leaves the previous file.

    Raises:
      TypeError: a name is not a ``str`` or a dtype is not supported.
      ValueError: an array is 0-d or zero-size (not representable in MXNet 1.9.1's format).
    """
    buf = save_tobuffer(data)
    atomic_write(path, lambda f: f.write(buf))
