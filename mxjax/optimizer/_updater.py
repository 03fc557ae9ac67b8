r"""MXNet's ``Updater`` / ``get_updater`` for eager, notebook-style loops.

``updater = get_updater(opt)``; ``weight = updater(index, grad, weight)`` applies one
update to one parameter and *returns* the new weight (JAX arrays are immutable, so it
cannot write in place as MXNet does). The states are kept by index, each an ``OptState``
of a one-leaf tree named ``names[index]`` (``str(index)`` by default), so every index
has its own update count: MXNet's ``num_update`` is the largest of them, the same thing
when every index is updated once per step. Optimizer-global state (Nadam's momentum
schedule) is per index here.

``get_states()`` writes MXNet's Module ``.states`` format (MXNet's ``Updater.set_states``
and ``Module.load_optimizer_states`` read it); ``set_states()`` reads it or a Trainer
file (:mod:`mxjax.mxnet_states`, never unpickling).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._contract import LOW_PRECISION, Optimizer, OptState


class Updater:
    """MXNet's ``Updater``: ``updater(index, grad, weight) -> new weight``.

    Attributes:
      optimizer: a built-in mxjax optimizer.
      states: ``{index: OptState}``.
    """

    def __init__(
        self, optimizer: Optimizer, names: Mapping[Any, str] | Sequence[str] | None = None
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an mxjax Optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        self.names = dict(enumerate(names)) if isinstance(names, Sequence) else dict(
            names or {}
        )
        self.states: dict[Any, OptState] = {}
        self._dtypes: dict[Any, Any] = {}
        self._pending: dict[Any, Any] = {}
        self._pending_count: int | None = None
        self._step = jax.jit(optimizer.update)

    def _tree(self, index: Any, x: Any) -> dict[str, Any]:
        return {self.names.get(index, str(index)): x}

    def __call__(self, index: Any, grad: Any, weight: Any) -> Any:
        """Update ``weight`` (one array, or lists of indices/grads/weights as MXNet
        accepts) and return the new weight(s)."""
        if isinstance(index, (list, tuple)):
            return [self(i, g, w) for i, g, w in zip(index, grad, weight, strict=True)]
        params = self._tree(index, jnp.asarray(weight))
        if index not in self.states:
            self.states[index] = self._initial(index, params)
            self._dtypes[index] = jnp.result_type(weight)
        new, self.states[index] = self._step(
            self._tree(index, jnp.asarray(grad)), self.states[index], params
        )
        return next(iter(new.values()))

    def _initial(self, index: Any, params: dict[str, Any]) -> OptState:
        if index not in self._pending:
            return self.optimizer.init(params)
        from ..mxnet_states import from_mxnet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fresh = self.optimizer.slots(self.optimizer.init(params))
        (name, w), = params.items()
        master = bool(self.optimizer.hyperparams.get("multi_precision")) and (
            jnp.result_type(w) in LOW_PRECISION
        )
        slots = from_mxnet(
            self.optimizer, name, self._pending.pop(index), fresh.get(name, {}), master,
            "states",
        )
        return self.optimizer.state_from_slots(
            {name: slots}, params, count=self._pending_count
        )

    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """The states in MXNet's Module ``.states`` format (``{index: state}``).

        ``dump_optimizer=True`` (MXNet pickles the optimizer object too) is not
        supported: mxjax writes no Python objects.
        """
        from ..mxnet_states import to_mxnet
        from ..nd._pickle import dumps

        if dump_optimizer:
            raise ValueError("dump_optimizer=True is not supported: mxjax writes no objects")
        mp = bool(self.optimizer.hyperparams.get("multi_precision"))
        out: dict[int, Any] = dict(self._pending)  # restored on no update yet
        for index, state in self.states.items():
            slots = next(iter(self.optimizer.slots(state).values()), {})
            master = mp and self._dtypes[index] in LOW_PRECISION
            out[index] = to_mxnet(self.optimizer, slots, master)
        return dumps(out)

    def set_states(self, states: bytes) -> None:
        """Load MXNet ``.states`` bytes (Module's, or Trainer's: the optimizer in it is
        not applied, only its ``num_update``); each index's state is restored on its
        next update, when its weight's shape is known."""
        from ..nd._pickle import Record, loads

        obj = loads(states)
        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], Record):
            obj, count = obj[0], obj[1].attrs.get("num_update")
            self._pending_count = count if isinstance(count, int) else None
        if not isinstance(obj, dict):
            raise ValueError("not an MXNet .states payload (a dict by index)")
        self.states = {}
        self._pending = dict(obj)


def get_updater(
    optimizer: Optimizer, names: Mapping[Any, str] | Sequence[str] | None = None
) -> Updater:
    """MXNet's ``mx.optimizer.get_updater``: an :class:`Updater` for ``optimizer``.

    Args:
      optimizer: the optimizer.
      names: the MXNet name of each index (for ``lr_mult``/``wd_mult``/``wd_by_name``).
    """
    return Updater(optimizer, names)
