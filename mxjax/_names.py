"""MXNet-style names for the leaves of a parameter pytree.

A leaf's name is its dict keys, attribute names and sequence indices joined by ``_``:
``{'fc': {'weight': w}}`` names ``w`` ``fc_weight``; ``[w0, w1]`` gives ``0`` and ``1``;
in a flat dict the name is the key. A bare array (no path) is named ``""``.
"""

from __future__ import annotations

import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from ._typing import PyTree


def _key_str(key: object) -> str:
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, SequenceKey):
        return str(key.idx)
    if isinstance(key, GetAttrKey):
        return key.name
    if isinstance(key, FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_name(path: tuple[object, ...]) -> str:
    """The MXNet name of the leaf at ``path`` (from ``tree_flatten_with_path``)."""
    return "_".join(_key_str(k) for k in path)


def leaf_names(tree: PyTree) -> list[str]:
    """Names of the leaves of ``tree``, in ``jax.tree.leaves`` order."""
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
