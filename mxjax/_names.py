"""MXNet-style names for the leaves of a parameter pytree.

A leaf's name is its dict keys, attribute names and sequence indices joined by ``_``:
``{'fc': {'weight': w}}`` names ``w`` ``fc_weight``; ``[w0, w1]`` gives ``0`` and ``1``;
in a flat dict the name is the key. A bare array (no path) is named ``""``.

Two different leaves can get one name (``{'a_b': x, 'a': {'b': y}}``); :func:`collisions`
finds them, with their paths, for the callers to which a name must be unique.

flax ``nnx`` trees (``nnx.state(model, nnx.Param)``) name a leaf by its module path,
the variable and the ``value`` attribute: ``linear_kernel_value``,
``linear_bias_value``. nnx calls weights ``kernel``, so MXNet's ``wd_by_name`` rule
(decay only ``*_weight`` / ``*_gamma``) matches nothing there: use
``wd_mult={name: 0.0}`` for the leaves to exempt instead.
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


def collisions(names: list[str], paths: list[str]) -> dict[str, list[str]]:
    """``{name: [path, path, ...]}`` for each name that two or more leaves share
    (``paths``: the leaves' ``jax.tree_util.keystr`` in the same order)."""
    seen: dict[str, list[str]] = {}
    for name, path in zip(names, paths, strict=True):
        seen.setdefault(name, []).append(path)
    return {n: p for n, p in seen.items() if len(p) > 1}


def describe_collisions(found: dict[str, list[str]], why: str) -> str:
    """One message for :func:`collisions`' result."""
    return "different leaves share an MXNet-style name, " + why + ": " + "; ".join(
        f"{name!r} names {' and '.join(paths)}" for name, paths in found.items()
    )


def leaf_names(tree: PyTree) -> list[str]:
    """Names of the leaves of ``tree``, in ``jax.tree.leaves`` order."""
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
