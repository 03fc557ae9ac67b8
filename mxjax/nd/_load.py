"""Read MXNet's ``.params`` / NDArray list files (``mx.nd.load``) with numpy alone.

The reader is written for untrusted input: it never unpickles, checks every claimed size
against the bytes that remain before it allocates anything, and turns every malformed
input into :class:`MXNetFileError`.
"""

from __future__ import annotations

import os
import struct
from math import prod

import numpy as np

from ._format import (
    CPU_DEVICES,
    LIST_MAGIC,
    MAX_NDIM,
    TYPE_FLAGS,
    V1_MAGIC,
    V2_MAGIC,
    V3_MAGIC,
    MXNetFileError,
)

_MAX_ZERO_SIZE_DIM = 2**31


class _Reader:
    """A bounds-checked little-endian cursor over a byte buffer."""

    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining:
            raise MXNetFileError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"only {self.remaining} remain"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> int:
        (value,) = struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))
        return int(value)


def _shape(r: _Reader, dim_fmt: str, ndim: int, what: str) -> tuple[int, ...]:
    if not 0 <= ndim <= MAX_NDIM:
        raise MXNetFileError(f"{what}: ndim {ndim} is outside [0, {MAX_NDIM}]")
    dims = tuple(r.unpack(dim_fmt, f"{what} dim {i}") for i in range(ndim))
    if any(d < 0 for d in dims):
        raise MXNetFileError(f"{what}: negative dimension in shape {dims}")
    return dims


def _data(r: _Reader, shape: tuple[int, ...], flag: int, what: str) -> np.ndarray:
    if flag not in TYPE_FLAGS:
        raise MXNetFileError(
            f"{what}: unknown or unsupported dtype code {flag} "
            f"(supported: {sorted(TYPE_FLAGS)})"
        )
    dtype = TYPE_FLAGS[flag]
    count = prod(shape)
    if count == 0 and any(d > _MAX_ZERO_SIZE_DIM for d in shape):
        raise MXNetFileError(f"{what}: implausible zero-size shape {shape}")
    nbytes = count * dtype.itemsize  # exact Python int: no overflow
    if nbytes > r.remaining:
        raise MXNetFileError(
            f"{what}: shape {shape} of {dtype.name} claims {nbytes} bytes, "
            f"only {r.remaining} remain"
        )
    raw = r.take(nbytes, f"{what} data")
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _context(r: _Reader, what: str) -> None:
    dev_type = r.unpack("i", f"{what} device type")
    r.unpack("i", f"{what} device id")
    if dev_type not in CPU_DEVICES:
        raise MXNetFileError(f"{what}: unknown device type {dev_type}")


def _record(r: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    magic = r.unpack("I", f"{what} header")
    if magic == V2_MAGIC:
        stype = r.unpack("i", f"{what} storage type")
        if stype != 0:
            kind = {1: "row_sparse", 2: "csr"}.get(stype, f"unknown ({stype})")
            raise MXNetFileError(
                f"{what}: storage type {kind} is not supported (dense arrays only)"
            )
        shape = _shape(r, "q", r.unpack("i", f"{what} ndim"), what)
    elif magic == V1_MAGIC:
        shape = _shape(r, "q", r.unpack("i", f"{what} ndim"), what)
    elif magic == V3_MAGIC:
        raise MXNetFileError(
            f"{what}: V3 (numpy-shape, npx.save) records are not supported; "
            "MXNet 1.9.1's legacy loader refuses them too"
        )
    else:  # pre-V1: the u32 just read is ndim, then u32 dims
        shape = _shape(r, "I", magic, f"{what} (legacy, ndim {magic})")
    if len(shape) == 0:
        raise MXNetFileError(
            f"{what}: holds a 'none' (empty, ndim 0) NDArray, which has no numpy value"
        )
    _context(r, what)
    flag = r.unpack("i", f"{what} dtype")
    return _data(r, shape, flag, what)


def load_frombuffer(
    buf: bytes | bytearray | memoryview,
) -> dict[str, np.ndarray] | list[np.ndarray]:
    """Decode an MXNet NDArray file held in memory (MXNet's ``nd.load_frombuffer``).

    Returns a ``list`` when the file stores no names (a list save) and a ``dict`` (in file
    order) otherwise, as MXNet does; an empty dict therefore loads as ``[]``.

    Raises:
      MXNetFileError: the bytes are not a valid dense V1/V2 NDArray file.
    """
    r = _Reader(bytes(buf))
    magic = r.unpack("Q", "file header")
    if magic != LIST_MAGIC:
        raise MXNetFileError(
            f"not an MXNet NDArray file: magic {magic:#x}, expected {LIST_MAGIC:#x}"
        )
    r.unpack("Q", "reserved header field")
    n = r.unpack("Q", "array count")
    if n > r.remaining // 4:  # every record is at least 4 bytes
        raise MXNetFileError(f"array count {n} cannot fit in {r.remaining} bytes")
    arrays = [_record(r, i) for i in range(n)]
    k = r.unpack("Q", "name count")
    if k not in (0, n):
        raise MXNetFileError(f"name count {k} is neither 0 nor the array count {n}")
    names = []
    for i in range(k):
        length = r.unpack("Q", f"name {i} length")
        raw = r.take(length, f"name {i}")
        try:
            names.append(bytes(raw).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise MXNetFileError(f"name {i} is not valid UTF-8: {e}") from None
    if r.remaining:
        raise MXNetFileError(f"{r.remaining} unexpected trailing bytes after the names")
    if k == 0:
        return arrays
    if len(set(names)) != len(names):
        raise MXNetFileError("duplicate array names")
    return dict(zip(names, arrays, strict=False))


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | list[np.ndarray]:
    """Read an MXNet ``.params`` / NDArray file (MXNet's ``mx.nd.load``) into numpy arrays.

    Dense V1 and V2 records (and pre-V1 legacy records) of float16/32/64, uint8, int8/32/64,
    bool and bfloat16 are read; arrays keep their dtype. Names are returned exactly as stored
    (Module checkpoints prefix ``arg:`` / ``aux:``). No pickling is involved and no
    allocation exceeds the file's size.

    Args:
      path: the file to read.

    Returns:
      A ``dict`` name -> array for a dict save, a ``list`` for a list save.

    Raises:
      MXNetFileError: the file is truncated, corrupted, sparse or of an unknown dtype.
      OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return load_frombuffer(f.read())
