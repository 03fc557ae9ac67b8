"""Shared test helpers: the recorded MXNet references and tree comparison."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import pathlib
from collections.abc import Iterator
from functools import cache

import numpy as np

@contextlib.contextmanager
def kernel_loops(monkeypatch, compiled: bool) -> Iterator[list[bool]]:
    """Inside, the custom call's programs traced anew run on compiled loops
    (``compiled``) or on the block interpreter; yields what each program's
    ``compile_loop`` returned. Starts with no loop registered."""
    from mxjax.optimizer import _fused

    kernels = _fused._kernels
    kernels.clear_loops()
    results: list[bool] = []
    compile_loop = kernels.compile_loop
    with monkeypatch.context() as m:
        if not compiled:
            m.setenv("MXJAX_NO_CODEGEN", "1")
        m.setattr(
            kernels,
            "compile_loop",
            lambda code: results.append(compile_loop(code)) or results[-1],
        )
        yield results


ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "reference"


@cache
def recorder():
    """``tools/record_mxnet_optimizers.py`` as a module (for its ``inputs``)."""
    spec = importlib.util.spec_from_file_location(
        "record_mxnet_optimizers", ROOT / "tools" / "record_mxnet_optimizers.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def optimizer_cases(name: str) -> dict:
    path = REFERENCE / "optimizer" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


@cache
def optimizer_arrays(name: str):
    return np.load(REFERENCE / "optimizer" / f"{name}.npz", allow_pickle=False)


def all_optimizer_cases() -> list[tuple[str, str]]:
    return [
        (p.stem, cid)
        for p in sorted((REFERENCE / "optimizer").glob("*.json"))
        for cid in optimizer_cases(p.stem)
    ]


def representative_cases(cases: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """A small covering subset of recorded cases: for each optimizer, greedily the cases
    that bring the most arguments, dtypes and schedulers not covered yet, until every
    one its cases use is covered."""
    features: dict[str, dict[str, set]] = {}
    for name, cid in cases:
        rec = optimizer_cases(name)[cid]
        f = {("dtype", rec["dtype"])} | {("arg", k) for k in rec["jax_kwargs"]}
        if rec["scheduler"]:
            f.add(("scheduler", rec["scheduler"][0]))
        features.setdefault(name, {})[cid] = f
    picked = set()
    for name, by_case in features.items():
        todo = set().union(*by_case.values())
        while todo:
            cid = max(by_case, key=lambda c: len(by_case[c] & todo))
            picked.add((name, cid))
            todo -= by_case[cid]
    return picked


def bits(x) -> np.ndarray:
    """The raw bits of an array (exact comparison, NaN-safe, any dtype)."""
    a = np.asarray(x)
    return a.view(f"uint{8 * a.dtype.itemsize}") if a.dtype.kind in "fV" else a


def assert_bit_identical(got, want) -> None:
    """Same tree structure, and every leaf of the same dtype and bits."""
    import jax

    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_array_equal(bits(g), bits(w))
