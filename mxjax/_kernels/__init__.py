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
import warnings
from pathlib import Path

import jax
import numpy as np

from . import codegen

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


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The kernel library, registered with XLA; ``None`` where it cannot be used."""
    if os.environ.get("MXJAX_NO_KERNELS") or jax.default_backend() != "cpu":
        return None
    path = library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        jax.ffi.register_ffi_target(
            TARGET, jax.ffi.pycapsule(lib.MxjaxElementwise), platform="cpu"
        )
        jax.ffi.register_ffi_target(
            UNPACK, jax.ffi.pycapsule(lib.MxjaxUnpack), platform="cpu"
        )
    except (OSError, AttributeError) as e:  # a library built for another platform
        warnings.warn(
            f"mxjax: not using {path.name} ({e}); XLA runs every step", stacklevel=3
        )
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
