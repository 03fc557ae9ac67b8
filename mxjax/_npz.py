"""A bounded ``.npz`` reader for untrusted files (checkpoints, ``initializer.Load``).

``np.load`` never unpickles with ``allow_pickle=False``, but it allocates what an
``.npy`` header claims before reading the data, and a deflated member may expand
~1000 times. This reader keeps memory in proportion to the bytes the file really
holds:

1. :func:`scan` reads only the zip directory and each member's ``.npy`` header (at most
   ``_MAX_HEADER`` decompressed bytes per member) and checks, before any data is
   decompressed: the member sizes against the file's length (members may not overlap),
   each header's shape and dtype against the member's declared size, and the total
   declared size against ``_MAX_EXPANSION`` times the compressed bytes (plus
   ``_SLACK`` for small, highly compressible arrays such as zero biases). A file
   that claims more is refused as it is: re-save it uncompressed (``np.savez``),
   whose members are bounded by the file's own size.
2. :meth:`Npz.read` decompresses one member straight into its preallocated array, in
   chunks, never past the declared size (the ``zlib`` output is capped), and checks
   the CRC at the end.

Every defect raises the caller's ``error`` type.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, NamedTuple

import numpy as np

_MAX_HEADER = 10_000  # numpy's own default limit
_MAX_EXPANSION = 64  # declared bytes per compressed byte, over the whole file
_SLACK = 1 << 20  # bytes allowed beyond that (small zero arrays compress ~1000:1)
_CHUNK = 1 << 18


class Member(NamedTuple):
    """One ``.npy`` member, from its header."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the data starts in the decompressed member


class Npz:
    """A scanned ``.npz`` file: ``members`` by name (without ``.npy``), ``read(name)``."""

    def __init__(self, zf: zipfile.ZipFile, members: dict[str, Member], error: type[Exception], what: str):
        self._zf, self.members, self._error, self._what = zf, members, error, what

    def read(self, key: str) -> np.ndarray:
        """The member's array, decompressed into its own buffer (no other copy)."""
        m = self.members[key]
        arr = np.empty(m.shape, m.dtype, order="F" if m.fortran else "C")
        out = memoryview(arr.reshape(-1, order="A").view(np.uint8))
        with self._zf.open(m.info) as f:
            f.read(m.offset)  # the header, read and checked by scan()
            pos = 0
            while pos < len(out):
                n = f.readinto(out[pos : pos + _CHUNK])
                if not n:
                    raise self._error(f"{self._what}: {m.info.filename}: truncated data")
                pos += n
            if f.read(1):  # also makes zipfile check the CRC
                raise self._error(f"{self._what}: {m.info.filename}: data beyond the header's size")
        return arr


@contextmanager
def open_npz(fileobj: IO[bytes], error: type[Exception], what: str) -> Iterator[Npz]:
    """:func:`scan` ``fileobj``; any defect (also while reading) raises ``error``."""
    try:
        with zipfile.ZipFile(fileobj) as zf:
            yield Npz(zf, scan(zf, _length(fileobj), error, what), error, what)
    except error:
        raise
    except Exception as e:  # zipfile, zlib, struct and numpy each raise their own
        raise error(f"{what}: corrupted or truncated .npz ({type(e).__name__}: {e})") from e


def read_npz(fileobj: IO[bytes], error: type[Exception], what: str) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip ``fileobj``, by name without ``.npy``.

    Raises:
      error: the file is not a zip of well-formed ``.npy`` members (truncated,
        corrupted, an object dtype, a header claiming another size than the member's,
        more declared data than the compressed bytes allow, an unsupported
        compression, ...).
    """
    with open_npz(fileobj, error, what) as npz:
        return {key: npz.read(key) for key in npz.members}


def _length(fileobj: IO[bytes]) -> int:
    pos = fileobj.tell()
    end = fileobj.seek(0, os.SEEK_END)
    fileobj.seek(pos)
    return end


def scan(zf: zipfile.ZipFile, length: int, error: type[Exception], what: str) -> dict[str, Member]:
    """Every member's header, checked as the module says; decompresses no data."""
    out: dict[str, Member] = {}
    stored = compressed = declared = 0
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
            stored += info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            compressed += info.compress_size
            declared += info.file_size
        else:
            raise error(
                f"{what}: member {name!r} uses unsupported compression {info.compress_type}"
            )
        if stored + compressed > length:
            raise error(
                f"{what}: the members claim {stored + compressed} bytes, more than the "
                f"file's {length} (truncated, or members overlapping)"
            )
        out[key] = _header(zf, info, error, f"{what}: {name}")
    if declared > _MAX_EXPANSION * compressed + _SLACK:
        raise error(
            f"{what}: compressed members claim {declared} bytes from {compressed} "
            f"compressed bytes, more than {_MAX_EXPANSION}x + {_SLACK} bytes (a zip bomb?); "
            "a trusted file can be re-saved uncompressed with np.savez"
        )
    return out


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, error: type[Exception], what: str) -> Member:
    with zf.open(info) as f:
        head = io.BytesIO(f.read(min(info.file_size, _MAX_HEADER + 16)))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(head, max_header_size=_MAX_HEADER)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(head, max_header_size=_MAX_HEADER)
    else:
        raise error(f"{what}: unsupported .npy format version {version}")
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise error(f"{what}: object arrays are refused (they would need pickle)")
    if dtype.itemsize == 0:
        raise error(f"{what}: zero-width dtype {dtype}")
    nbytes = math.prod(shape) * dtype.itemsize  # exact Python int: no overflow
    offset = head.tell()
    if offset + nbytes != info.file_size:
        raise error(
            f"{what}: header claims shape {shape} of {dtype} ({nbytes} bytes) but the "
            f"member holds {info.file_size - offset} data bytes"
        )
    return Member(info, tuple(shape), bool(fortran), dtype, offset)
