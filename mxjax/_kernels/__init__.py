"""mxjax's compiled kernels: XLA FFI custom calls for the CPU backend.

``elementwise.cc`` is built into ``_elementwise*.so`` when mxjax is installed (an
optional extension: without a C++ compiler the install still succeeds, and mxjax runs
every step through XLA). It is a plain shared library, loaded with ``ctypes`` and
registered with XLA as the custom call :data:`TARGET`. A program's element phases also
get compiled loops (:mod:`mxjax._kernels.codegen`) when a C compiler is present.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
import re
from pathlib import Path

import jax
import numpy as np

from . import cache, codegen, program

TARGET = "mxjax_elementwise"
UNPACK = "mxjax_unpack"


def library_path() -> Path | None:
    """The built kernel library next to this file, if any."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_elementwise{suffix}"
        if candidate.exists():
            return candidate
    return None


def _stale(lib: ctypes.CDLL) -> str | None:
    """Why ``lib`` runs another program encoding than :mod:`.program`'s; ``None`` if not."""
    lib.MxjaxEncoding.restype = ctypes.c_char_p
    built = lib.MxjaxEncoding().decode()
    if built == program.DIGEST:
        return None
    return (
        f"it was built from another program encoding ({built}, this mxjax: "
        f"{program.DIGEST}); reinstall mxjax to rebuild it"
    )


def jaxlib_version() -> str:
    """The running jaxlib's version."""
    import jaxlib.version

    return jaxlib.version.__version__


def running_ffi_api() -> tuple[int, int] | None:
    """The XLA FFI API version of the running jaxlib (from the headers it ships, which
    are its own); ``None`` if they cannot be read."""
    try:
        import jaxlib

        header = Path(jaxlib.__file__).parent / "include/xla/ffi/api/c_api.h"
        text = header.read_text()
    except (ImportError, OSError):
        return None
    found = [re.search(rf"#define XLA_FFI_API_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR")]
    if None in found:
        return None
    return int(found[0].group(1)), int(found[1].group(1))


def _incompatible(lib: ctypes.CDLL) -> str | None:
    """Why XLA in this process cannot call ``lib``'s handlers; ``None`` if it can.

    XLA runs a handler built with FFI headers of the same major version and a minor
    version no newer than its own (older minor versions stay supported for a year)."""
    major, minor = ctypes.c_int32(), ctypes.c_int32()
    lib.MxjaxFfiApiVersion(ctypes.byref(major), ctypes.byref(minor))
    lib.MxjaxBuiltWithJaxlib.restype = ctypes.c_char_p
    built_with = lib.MxjaxBuiltWithJaxlib().decode()
    built = (major.value, minor.value)
    running = running_ffi_api()
    if running is None:
        if built_with == jaxlib_version():
            return None
        return (
            f"it was built with jaxlib {built_with} (FFI API {built[0]}.{built[1]}), this "
            f"is jaxlib {jaxlib_version()}, whose FFI API version is unknown"
        )
    if built[0] == running[0] and built[1] <= running[1]:
        return None
    return (
        f"it was built with jaxlib {built_with} (XLA FFI API {built[0]}.{built[1]}), which "
        f"jaxlib {jaxlib_version()} (FFI API {running[0]}.{running[1]}) cannot call; "
        "reinstall mxjax to rebuild it"
    )


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The kernel library, registered with XLA; ``None`` where it cannot be used (warned
    once, unless the user asked for XLA or the backend is not the CPU)."""
    if os.environ.get("MXJAX_NO_KERNELS") or jax.default_backend() != "cpu":
        return None
    path = library_path()
    if path is None:
        cache.report(
            "the multi-tensor kernel was not built (mxjax installed without a C++17 "
            "compiler?): multi_tensor=True runs every step through XLA "
            "(MXJAX_NO_KERNELS=1 says so without this warning)"
        )
        return None
    try:
        lib = ctypes.CDLL(str(path))
        why = _incompatible(lib) or _stale(lib)
        if why is None:
            jax.ffi.register_ffi_target(
                TARGET, jax.ffi.pycapsule(lib.MxjaxElementwise), platform="cpu"
            )
            jax.ffi.register_ffi_target(
                UNPACK, jax.ffi.pycapsule(lib.MxjaxUnpack), platform="cpu"
            )
    except (OSError, AttributeError) as e:  # another platform's or an older build
        why = str(e)
    if why is not None:
        cache.report(f"not using {path.name}: {why}; XLA runs every step")
        return None
    return lib


def available() -> bool:
    """Whether the custom call is registered and the default backend is the CPU.

    Decided once per process, at the first multi-tensor trace. Set the environment
    variable ``MXJAX_NO_KERNELS=1`` to run every step through XLA instead.
    """
    return _library() is not None


def compile_loop(code: np.ndarray) -> bool:
    """Give ``code`` a compiled loop (see :mod:`~mxjax._kernels.codegen`); whether it has
    one. The custom call runs the program either way, with the same results."""
    lib = _library()
    return lib is not None and codegen.register(lib, code)


def clear_loops() -> None:
    """Forget every compiled loop: from now on the interpreter runs every program."""
    lib = _library()
    if lib is not None:
        codegen.clear(lib)
