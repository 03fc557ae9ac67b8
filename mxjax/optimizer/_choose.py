"""Which state layout an optimizer keeps: ``multi_tensor=True``, ``False`` or ``"auto"``.

``True`` always keeps the flat layout (:mod:`~mxjax.optimizer._multi`) where the rule has
one, ``False`` always the per-leaf layout. ``"auto"`` (the default) decides from the
parameters (arrays or ``jax.ShapeDtypeStruct``\\ s), the same way in ``init`` and in
``update``. It keeps the flat layout when all of these hold, as measured in
``benchmarks/RESULTS.md`` (whole training steps and the update alone):

* the rule is declared elementwise (``Rule.elementwise=True``: every built-in optimizer
  that has a flat layout) or ``per_leaf_scalars`` (LAMB, LANS, Nadam): a user rule that
  leaves ``elementwise`` unset keeps the per-leaf layout, so it never meets the fast
  path's refusals unasked;
* mxjax's CPU custom call is available (the default backend is the CPU, the kernel was
  built and ``MXJAX_NO_KERNELS`` is not set): on other backends the flat layout runs
  through XLA, which was not measured faster;
* the process has one device, so no parameter can be sharded over several;
* the parameters are packed (``opt.pack``), or are at least :data:`AUTO_MIN_LEAVES`
  leaves. Whole training steps (``benchmarks/whole_step.py``): on 1,002 tensors the flat
  layout steps in 0.2–0.5× optax's time and compiles in 0.6×; on 54–62 tensors (a small
  transformer, a ResNet-18) steps are equal on every path and the flat layout compiles
  in ~0.9× optax's time, the per-leaf one in 1.2–1.4×. Below 32 leaves
  (``benchmarks/layout_crossover.py``) the flat layout still compiles faster, but by
  hundredths of a second, and its step is within tens of microseconds either way (SGD's
  is slower); there the per-leaf state, which keeps the parameters' structure (optax's
  tree utilities, explicit sharding), is worth more.

:func:`layout_of` tells which layout a state has.
"""

from __future__ import annotations

from typing import Any, Literal

import jax

from .. import _kernels
from .._typing import Params, PyTree
from ._contract import Rule
from ._layout import StateLayout, _PerLeaf
from ._multi import MultiSlots, MultiTensor
from ._packed import Packed
from ._preamble import _Config

AUTO_MIN_LEAVES = 32
"""``multi_tensor="auto"`` keeps the flat layout for trees of at least this many leaves."""


def layout_of(state: PyTree) -> Literal["multi-tensor", "per-leaf"]:
    """``"multi-tensor"`` for a state of the flat layout (``multi_tensor=True``, or
    ``"auto"`` where it chose it), else ``"per-leaf"``."""
    slots = getattr(state, "slots", None)
    return "multi-tensor" if isinstance(slots, MultiSlots) else "per-leaf"


class Layouts:
    """An optimizer's state layouts, and which one ``init`` and ``update`` use."""

    def __init__(self, rule: Rule, cfg: _Config):
        self.mode = cfg.multi_tensor
        self.per_leaf: StateLayout = _PerLeaf(rule, cfg)
        self.flat: StateLayout | None = MultiTensor(rule, cfg) if rule.flat_state else None
        self.declared = rule.elementwise is True or rule.per_leaf_scalars

    def for_params(self, params: Params) -> StateLayout:
        """The layout of ``params``' state: the one ``init`` makes and ``update``
        steps (a state of the other layout is refused, naming it)."""
        if self.flat is None or self.mode is False:
            return self.per_leaf
        if self.mode is True or self._auto_flat(params):
            return self.flat
        return self.per_leaf

    def _auto_flat(self, params: Params) -> bool:
        if not self.declared:
            return False
        if isinstance(params, Packed):
            return True
        return (
            _kernels.available()
            and jax.device_count() == 1
            and len(jax.tree.leaves(params)) >= AUTO_MIN_LEAVES
        )
