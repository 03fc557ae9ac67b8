"""Shared test helpers: the recorded MXNet references and tree comparison."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from functools import cache

import numpy as np

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
