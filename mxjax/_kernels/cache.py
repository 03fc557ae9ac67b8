"""The compiled loops' disk cache: a private folder of sealed libraries, never foreign code.

A library is only ``dlopen``-ed (which runs its constructors) when all of this holds:

* the folder is ``$MXJAX_CACHE_DIR/kernels`` (default ``$XDG_CACHE_HOME/mxjax/kernels``
  or ``~/.cache/mxjax/kernels``), created ``0700``: a real folder (not a symbolic link),
  owned by this user, with no access for group or others, and no folder above it (on the
  path as given or as resolved) is owned by another user or writable by everyone without
  the sticky bit (``/tmp`` is fine). Otherwise mxjax warns once and compiles no loop: the
  interpreter runs, with the same results;
* the file is a regular file owned by this user, opened without following links;
* its last bytes are a seal: an HMAC-SHA-256, under a secret key kept in the folder
  (``key``, ``0600``, 32 random bytes), of the *identity* of what this process would
  build (the SHA-256 of the exact C source, the compiler and its version, the flags and
  the CPU) and of the library's bytes. A library planted in the folder, built for another
  program or another machine, stale, truncated or altered has no valid seal: it is
  rebuilt and replaced, never loaded. The bytes loaded are the bytes checked (copied to
  a new private file first), so the file cannot change in between.

Files are written to a unique temporary name in the folder and renamed into place
(``os.replace``), so a reader sees a whole file or none.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import hmac
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

_MAGIC = b"\0mxjax-seal-1\0"
_TAG = 32  # bytes of HMAC-SHA-256
_SEAL = len(_MAGIC) + _TAG
_KEY_BYTES = 32
_reported: set[str] = set()


def report(message: str) -> None:
    """Warn once per process and message (a fallback the user should know about)."""
    if message not in _reported:
        _reported.add(message)
        warnings.warn(f"mxjax: {message}", UserWarning, stacklevel=3)


def root() -> Path:
    """The cache's root, from the environment (not created)."""
    configured = os.environ.get("MXJAX_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mxjax"


def _unsafe_ancestor(path: Path) -> str | None:
    """Why a folder above ``path`` lets someone else replace it; ``None`` if none does."""
    me = os.getuid()
    for parent in path.parents:
        try:
            st = os.lstat(parent)
        except OSError as e:
            return f"cannot inspect {parent} ({e.strerror})"
        if st.st_uid not in (0, me):
            return f"{parent} belongs to another user (uid {st.st_uid})"
        if (
            stat.S_ISDIR(st.st_mode)
            and st.st_mode & stat.S_IWOTH
            and not st.st_mode & stat.S_ISVTX
        ):
            return f"{parent} is writable by everyone and not sticky"
    return None


def problem(folder: Path) -> str | None:
    """Why ``folder`` is not a private cache folder of this user; ``None`` if it is."""
    folder = Path(os.path.abspath(folder))
    try:
        st = os.lstat(folder)
    except OSError as e:
        return f"cannot inspect {folder} ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"{folder} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    if st.st_uid != os.getuid():
        return f"{folder} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):04o})"
    resolved = Path(os.path.realpath(folder))
    return _unsafe_ancestor(folder) or _unsafe_ancestor(resolved)


@functools.cache
def _private_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="mxjax-kernels-"))


def folder() -> Path | None:
    """The cache folder, created private; ``None`` (warned once) where it is not safe.

    Where the configured folder cannot be created (a file in the way, a read-only
    home), a private temporary folder serves this process."""
    if not hasattr(os, "getuid") or not hasattr(os, "O_NOFOLLOW"):
        report("no private kernel cache on this platform; no compiled loops")
        return None
    path = root() / "kernels"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        path = _private_folder()
    why = problem(path)
    if why is not None:
        report(
            f"not using the kernel cache {path}: {why}. The custom call's interpreter "
            "runs every step (same results, slower); make the folder private "
            "(chmod 700) and your own, or set MXJAX_CACHE_DIR"
        )
        return None
    return path


def _write_new(path: Path, data: bytes) -> Path:
    """``data`` in a new file (``0600``, unique name) in ``path``'s folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _read_private(path: Path, mask: int = 0o022) -> tuple[int, bytes] | None:
    """An open descriptor of ``path`` and its bytes, if it is a regular file of this
    user with none of the permission bits ``mask`` (default: no one else may write it),
    not following a link; else ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.getuid()
            or st.st_mode & mask
        ):
            os.close(fd)
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        os.close(fd)
        return None
    return fd, b"".join(chunks)


def _key(folder: Path) -> bytes | None:
    """The folder's secret key: created on first use, replaced if it is not a private
    file of this user of the right size (every library sealed under the old key is
    then rebuilt)."""
    path = folder / "key"
    for _ in range(2):
        found = _read_private(path, 0o077)
        if found is not None:
            fd, key = found
            os.close(fd)
            if len(key) == _KEY_BYTES:
                return key
        tmp = _write_new(path, os.urandom(_KEY_BYTES))
        try:
            if os.path.lexists(path):
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic; never replaces a concurrent first key
        except FileExistsError:
            pass
        except OSError:
            return None
        finally:
            if tmp.exists():
                os.unlink(tmp)
    return None


def _tag(key: bytes, identity: str, library: bytes) -> bytes:
    return hmac.new(key, identity.encode() + b"\0" + library, hashlib.sha256).digest()


def _verified(data: bytes, key: bytes, identity: str) -> bool:
    if len(data) <= _SEAL or data[-_SEAL:-_TAG] != _MAGIC:
        return False
    library, tag = data[:-_SEAL], data[-_TAG:]
    return hmac.compare_digest(tag, _tag(key, identity, library))


def _open_sealed(path: Path, key: bytes, identity: str) -> ctypes.CDLL | None:
    """The library at ``path`` if its seal is valid for ``identity``; never loads it
    otherwise. The bytes checked are the bytes loaded: they are copied to a new file of
    a unique name (the loader would take a name it has seen for the library it loaded
    then), loaded from there and unlinked."""
    found = _read_private(path)
    if found is None:
        return None
    fd, data = found
    os.close(fd)
    if not _verified(data, key, identity):
        return None
    copy = _write_new(path, data[:-_SEAL])
    try:
        return ctypes.CDLL(str(copy))
    except OSError:
        return None
    finally:
        os.unlink(copy)


def load(identity: str, build: Callable[[Path], bytes | None]) -> ctypes.CDLL | None:
    """The library of ``identity`` (a hex digest of what would be built): from the
    cache if a valid one is there, else built by ``build(folder)`` (the library's bytes,
    or ``None`` if it failed), sealed, stored and loaded. ``None`` where the cache is
    unsafe or the build failed."""
    where = folder()
    if where is None:
        return None
    key = _key(where)
    if key is None:
        report(f"cannot read or create the kernel cache's key in {where}; no compiled loops")
        return None
    path = where / f"fused_{identity}.so"
    lib = _open_sealed(path, key, identity)
    if lib is not None:
        return lib
    library = build(where)  # missing, stale, foreign or corrupt: (re)built
    if library is None:
        return None
    sealed = library + _MAGIC + _tag(key, identity, library)
    try:
        os.replace(_write_new(path, sealed), path)
    except OSError:
        return None
    return _open_sealed(path, key, identity)
