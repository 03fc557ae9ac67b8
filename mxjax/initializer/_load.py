"""``Load``: initialize from saved parameters (a dict, ``.npz`` or MXNet ``.params``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .. import nd
from .._npz import read_npz
from .._validate import flag, instance
from ._base import NamedInit, as_dtype, as_shape

logger = logging.getLogger("mxjax.initializer")


def _read(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    if os.fspath(path).endswith(".npz"):
        with open(path, "rb") as f:
            return read_npz(f, nd.MXNetFileError, os.fspath(path))
    data = nd.load(path)
    if not isinstance(data, dict):
        raise ValueError(
            f"Load needs a dict .params file (names -> arrays); {os.fspath(path)!r} holds "
            f"a list of {len(data)} unnamed arrays"
        )
    return data


def _some(names: list[str], n: int = 8) -> str:
    return repr(names[:n])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > n else "]")


def _cast(name: str, loaded: np.ndarray, dtype: np.dtype) -> jax.Array:
    """``loaded`` in ``dtype``; finite values that the dtype cannot hold are refused."""
    with np.errstate(over="ignore", invalid="ignore"):  # detected below, by name
        out = jnp.asarray(loaded, dtype)
    if (
        jnp.issubdtype(dtype, jnp.inexact)
        and np.issubdtype(loaded.dtype, np.number)
        and bool(np.isfinite(loaded).all())
        and not bool(jnp.isfinite(out).all())
    ):
        big = float(np.abs(loaded.astype(np.float64)).max())
        raise ValueError(
            f"Parameter {name} cannot be initialized from loading: its values reach "
            f"{big:g}, beyond {dtype}'s largest {float(jnp.finfo(dtype).max):g} "
            "(they would load as inf)"
        )
    return out


class Load:
    """MXNet's ``Load(param, default_init=None, verbose=False)``.

    Parameters found in ``param`` are copied (cast to the requested dtype); the others go to
    ``default_init``'s name dispatch. Keys starting with ``arg:`` or ``aux:`` lose that
    prefix (Module checkpoints); other keys are kept. Like MXNet's, it is not an
    ``Initializer`` subclass and needs names: use it with :func:`init_params` or
    :meth:`init_named`.

    Args:
      param: a mapping name -> array, a ``.npz`` path, or an MXNet ``.params`` path (read
        with :func:`mxjax.nd.load`; it must be a dict file).
      default_init: initializer for names not in ``param``; None means they are an error.
      verbose: log ``Initialized NAME by loading`` / ``by default`` (``logging.INFO`` on the
        ``mxjax.initializer`` logger).

    Raises:
      ValueError: ``param`` is a list file, or holds two names for one parameter
        (``arg:x`` and ``aux:x``); at call time, a shape mismatch (naming the
        parameter), a missing name without ``default_init``, or finite values beyond
        the requested dtype's range (they would load as inf); in :func:`init_params`,
        a file none of whose names is a parameter. (MXNet raises ``AssertionError``
        for the first ones and accepts the others silently.)
      TypeError: ``param`` is not a mapping or a path.
      mxjax.nd.MXNetFileError: a ``.params`` or ``.npz`` file is truncated, corrupted
        or hostile (an object array, a header claiming more data than the file holds).
        Nothing is unpickled and nothing larger than the file is allocated.
      OSError: the file cannot be read (``FileNotFoundError``, ...).
    """

    def __init__(
        self,
        param: Mapping[str, Any] | str | os.PathLike[str],
        default_init: NamedInit | None = None,
        verbose: bool = False,
    ) -> None:
        if isinstance(param, (str, os.PathLike)):
            param = _read(param)
        instance("param", param, Mapping, "a mapping, an .npz path or a .params path")
        self.param: dict[str, np.ndarray] = {}
        source: dict[str, str] = {}
        for name, arr in param.items():
            key = name[4:] if name.startswith(("arg:", "aux:")) else name
            if key in self.param:  # arg:x and aux:x (or x): one would be dropped
                raise ValueError(
                    f"param holds both {source[key]!r} and {name!r}, which both name "
                    f"parameter {key!r} once the arg:/aux: prefix is stripped"
                )
            self.param[key], source[key] = np.asarray(arr), name
        if default_init is not None:
            instance("default_init", default_init, NamedInit, "an initializer or None")
        self.default_init = default_init
        self.verbose = flag("verbose", verbose)

    def init_named(
        self,
        name: str,
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = jnp.float32,
        *,
        global_init: NamedInit | None = None,
    ) -> jax.Array:
        """The loaded value of ``name``, or ``default_init``'s for a missing name."""
        shape_t = as_shape(shape)
        if name in self.param:
            loaded = self.param[name]
            if loaded.shape != shape_t:
                raise ValueError(
                    f"Parameter {name} cannot be initialized from loading. "
                    f"Shape mismatch, target {shape_t} vs loaded {loaded.shape}"
                )
            out = _cast(name, loaded, as_dtype(dtype))
            if self.verbose:
                logger.info("Initialized %s by loading", name)
            return out
        if self.default_init is None:
            raise ValueError(
                f"Cannot initialize {name}: not found in the loaded parameters and no "
                "default_init is provided"
            )
        out = self.default_init.init_named(
            name, key, shape_t, dtype, global_init=global_init
        )
        if self.verbose:
            logger.info("Initialized %s by default", name)
        return out

    def check_names(self, names: Sequence[str]) -> None:
        """Called by :func:`init_params` with the names this ``Load`` will be asked
        for: a file that holds none of them (another naming scheme, a missing prefix)
        would silently leave every parameter to ``default_init``, so it is refused."""
        if names and not set(names) & set(self.param):
            raise ValueError(
                f"none of the {len(self.param)} loaded names matches a parameter: "
                f"loaded {_some(sorted(self.param))}, parameters {_some(list(names))}"
            )

    def __call__(
        self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike | None = None
    ) -> jax.Array:
        raise TypeError(
            "Load initializes by parameter name; use init_params(Load(...), key, shapes) "
            "or Load(...).init_named(name, key, shape, dtype)"
        )
