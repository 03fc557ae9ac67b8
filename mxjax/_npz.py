"""A bounds-checked ``.npz`` reader for untrusted files (checkpoints, ``Load``).

``np.load`` never unpickles with ``allow_pickle=False``, but it allocates what an
``.npy`` header claims before reading the data (``np.ndarray(count)`` for zip members),
so a header claiming 2**40 elements asks for terabytes. This reader checks every
member's header against the member's size first: the data must be exactly the bytes
the header claims, and the member's uncompressed size is bounded by its compressed
size (deflate cannot expand more than ~1032:1). Every defect raises ``error``.
"""

from __future__ import annotations

import math
import zipfile
from typing import IO

import numpy as np

_MAX_DEFLATE_RATIO = 1032
_MAX_HEADER = 10_000  # numpy's own default limit


def read_npz(
    fileobj: IO[bytes], error: type[Exception], what: str
) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip ``fileobj``, by name without ``.npy``.

    Raises:
      error: the file is not a zip of well-formed ``.npy`` members (truncated,
        corrupted, an object dtype, a header claiming more data than the member holds,
        an unsupported compression, ...).
    """
    try:
        return _read(fileobj, error, what)
    except error:
        raise
    except Exception as e:  # zipfile, zlib, struct and numpy each raise their own
        raise error(
            f"{what}: corrupted or truncated .npz ({type(e).__name__}: {e})"
        ) from e


def _read(
    fileobj: IO[bytes], error: type[Exception], what: str
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(fileobj) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise error(f"{what}: member {name!r} is not an .npy array")
            key = name[: -len(".npy")]
            if key in out:
                raise error(f"{what}: duplicate member {name!r}")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise error(f"{what}: member {name!r} has inconsistent sizes")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO:
                    raise error(
                        f"{what}: member {name!r} claims {info.file_size} bytes from "
                        f"{info.compress_size} compressed bytes"
                    )
            else:
                raise error(
                    f"{what}: member {name!r} uses unsupported compression "
                    f"{info.compress_type}"
                )
            with zf.open(info) as f:
                out[key] = _read_npy(f, info.file_size, error, f"{what}: {name}")
    return out


def _read_npy(f: IO[bytes], size: int, error: type[Exception], what: str) -> np.ndarray:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
    else:
        raise error(f"{what}: unsupported .npy format version {version}")
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise error(f"{what}: object arrays are refused (they would need pickle)")
    if dtype.itemsize == 0:
        raise error(f"{what}: zero-width dtype {dtype}")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize  # exact Python int: no overflow
    header_len = f.tell()
    if header_len + nbytes != size:
        raise error(
            f"{what}: header claims shape {shape} of {dtype} ({nbytes} bytes) but the "
            f"member holds {size - header_len} data bytes"
        )
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise error(f"{what}: truncated array data")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    order = "F" if fortran else "C"
    return arr.reshape(shape, order=order).copy(order=order)
