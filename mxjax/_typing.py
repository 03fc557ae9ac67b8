"""Type aliases shared across mxjax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any
Params = PyTree
Grads = PyTree
Schedule = Callable[[jax.typing.ArrayLike], jax.Array]
"""A learning-rate schedule: ``num_update -> lr`` (MXNet's count, 1 on the first update)."""
