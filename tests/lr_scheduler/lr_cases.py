"""Shared test helpers: the MXNet recordings and the comparison rule."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

REF = pathlib.Path(__file__).resolve().parent.parent / "reference" / "lr_scheduler"
KINDS = ("factor", "multifactor", "poly", "cosine")
RTOL = 1e-5


def load(kind: str) -> list[dict[str, Any]]:
    """The recorded cases of ``tests/reference/lr_scheduler/<kind>.json``."""
    return json.loads((REF / f"{kind}.json").read_text())["cases"]


def all_cases() -> list[dict[str, Any]]:
    return [dict(c, kind=k) for k in KINDS for c in load(k)]


def case_id(case: dict[str, Any]) -> str:
    return f"{case.get('kind', 'overwrite')}-{case['name']}"


def comparable(case: dict[str, Any], ns: list[int]) -> np.ndarray:
    """Where a pure f(n) can equal MXNet's stateful output for the call sequence
    ``ns``: everywhere, except for Poly/Cosine calls past ``max_update`` when no
    call hit ``max_update`` exactly (MXNet then repeats its last in-range value,
    [Q36])."""
    m = case["kwargs"].get("max_update")
    if m is None:
        return np.ones(len(ns), bool)
    hit = np.cumsum(np.asarray(ns) == m) > 0
    return (np.asarray(ns) <= m) | hit


def assert_close(got: Any, want: Any, rtol: float = RTOL) -> None:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
