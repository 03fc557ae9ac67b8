"""Writing a file atomically: the one helper behind ``mx.nd.save`` and
``mxjax.checkpoint.save``.

The data goes to a fresh temporary file in the target's directory (a unique name per
call, so threads and processes never share one), is flushed and ``fsync``-ed, and only
then renamed over the target with ``os.replace``. A write that fails part-way (disk
full, quota, an exception, Ctrl-C) leaves the previous file untouched and removes the
temporary one; of concurrent writers to one path the last complete one wins, and a
reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


_MODE = 0o666 & ~_umask()  # what open(path, "wb") would give a new file


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file, then atomically replace ``path`` with it.

    Raises:
      whatever ``write`` or the file system raises; ``path`` is then unchanged.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _MODE)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
