"""``init_params``: initialize a whole pytree with MXNet's name dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .._names import collisions, describe_collisions, path_name
from .._typing import PyTree
from ._base import Initializer, NamedInit, leaf_key
from ._create import create


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x
    )


def _is_leaf(x: Any) -> bool:
    return _is_shape(x) or (hasattr(x, "shape") and hasattr(x, "dtype"))


def init_params(
    init: NamedInit | str,
    key: jax.Array,
    shapes: PyTree,
    *,
    dtype: DTypeLike = jnp.float32,
    per_param: Mapping[str, Initializer | str] | None = None,
) -> PyTree:
    """Initialize every leaf of ``shapes`` as MXNet's ``Module.init_params`` would.

    Each leaf's name is its path joined by ``_`` (``{'fc1': {'weight': s}}`` -> ``fc1_weight``)
    and its key is ``fold_in(key, crc32(name))``, so adding a parameter leaves the others
    unchanged. Then, first match wins [Q27]:

    * a name in ``per_param``: that initializer's *weight* rule, whatever the name (MXNet's
      ``__init__`` attribute, as Gluon's ``Parameter(init=...)`` [Q28]); its global
      initializer is ``init``;
    * otherwise ``init.init_named(name, ...)``: ``*weight`` -> the weight rule,
      ``*bias``/``*beta``/``*min`` -> 0, ``*gamma``/``*max`` -> 1, ``*moving_mean`` /
      ``*moving_inv_var`` / ``*moving_avg`` -> 0, ``*moving_var`` -> 1; ``Mixed`` and
      ``Load`` route first.

    Args:
      init: an Initializer, ``Mixed``, ``Load``, or a name/JSON for :func:`create`.
      key: a JAX PRNG key.
      shapes: a pytree whose leaves are shape tuples (``(3, 4)``; a tuple of ints is a
        shape, not a subtree), ``jax.ShapeDtypeStruct`` s or arrays (their shape and dtype).
      dtype: dtype of the leaves given as bare shape tuples.
      per_param: leaf name -> initializer applied through its weight rule.

    Returns:
      A pytree like ``shapes`` with arrays.

    Raises:
      ValueError: a name matches no rule (naming it), a ``per_param`` name is not a
        leaf, or two leaves share a name (naming both paths).
      TypeError: a leaf is not a shape.

    >>> init_params(Xavier(), jax.random.key(0), {"fc": {"weight": (4, 3), "bias": (4,)}})  # doctest: +SKIP
    """
    if isinstance(init, str):
        init = create(init)
    overrides = {n: create(i) for n, i in (per_param or {}).items()}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=_is_leaf)
    names = [path_name(p) for p, _ in leaves]
    found = collisions(names, [jax.tree_util.keystr(p) for p, _ in leaves])
    if found:
        raise ValueError(
            describe_collisions(
                found, "so they would get the same key (identical random values)"
            )
        )
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(
            f"per_param names {unknown} are not leaves of shapes; leaves: {names}"
        )
    check = getattr(init, "check_names", None)  # Load: refuses a file matching nothing
    if check is not None:
        check([n for n in names if n not in overrides])
    out = []
    for name, (_, leaf) in zip(names, leaves, strict=False):
        if _is_shape(leaf):
            shape, dt = tuple(int(d) for d in leaf), dtype
        elif hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            shape, dt = tuple(leaf.shape), leaf.dtype
        else:
            raise TypeError(
                f"leaf {name!r} is not a shape: {leaf!r} (use a tuple of ints, a "
                "jax.ShapeDtypeStruct or an array)"
            )
        k = leaf_key(key, name)
        if name in overrides:
            out.append(
                overrides[name].init_weight(k, shape, dt, name=name, global_init=init)
            )
        else:
            out.append(init.init_named(name, k, shape, dt))
    return jax.tree_util.tree_unflatten(treedef, out)
