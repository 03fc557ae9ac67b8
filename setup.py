"""Builds mxjax's optional CPU kernel (an XLA FFI custom call); the rest is pyproject.toml.

The kernel is a plain shared library that mxjax loads with ctypes. It needs XLA's FFI
headers, which jaxlib ships (a build requirement). If it cannot be built (no C++17
compiler), the install still succeeds and mxjax runs every step through XLA. The library
records the FFI API version of the headers it was built with: run with a jaxlib whose
XLA cannot call it, mxjax warns once and uses XLA instead.
"""

import os

from setuptools import Extension, setup


def ffi_include() -> list[str]:
    try:
        import jaxlib
    except ImportError:
        return []
    return [os.path.join(os.path.dirname(jaxlib.__file__), "include")]


def jaxlib_version() -> list[tuple[str, str]]:
    """The jaxlib built against, recorded in the library (mxjax reports a mismatch)."""
    try:
        from jaxlib.version import __version__
    except ImportError:
        return []
    return [("MXJAX_JAXLIB_VERSION", f'"{__version__}"')]


setup(
    ext_modules=[
        Extension(
            "mxjax._kernels._elementwise",
            ["mxjax/_kernels/elementwise.cc"],
            # generated from mxjax/_kernels/program.py (the program encoding)
            depends=["mxjax/_kernels/program.h"],
            include_dirs=ffi_include(),
            define_macros=jaxlib_version(),
            language="c++",
            extra_compile_args=[
                "-std=c++17",
                "-O3",
                "-ffp-contract=off",  # every operation rounds on its own, as in XLA
                "-fno-math-errno",  # lets sqrt vectorize
                "-Wno-return-type",  # in XLA's headers
            ],
            optional=True,
        )
    ]
)
