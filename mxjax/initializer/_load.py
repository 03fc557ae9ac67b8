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
      ValueError: ``param`` is a list file or not a mapping; at call time, a shape
        mismatch (naming the parameter) or a missing name without ``default_init``. (MXNet
        raises ``AssertionError`` for these.)
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
        for name, arr in param.items():
            key = name[4:] if name.startswith(("arg:", "aux:")) else name
            self.param[key] = np.asarray(arr)
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
            if self.verbose:
                logger.info("Initialized %s by loading", name)
            return jnp.asarray(loaded, as_dtype(dtype))
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

    def __call__(
        self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike | None = None
    ) -> jax.Array:
        raise TypeError(
            "Load initializes by parameter name; use init_params(Load(...), key, shapes) "
            "or Load(...).init_named(name, key, shape, dtype)"
        )
