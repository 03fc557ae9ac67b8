r"""Resume an MXNet 1.9.1 training run: read its optimizer ``.states`` file.

MXNet writes two kinds, both pickles of ``Updater.get_states``:

* **Module** (``Module.save_checkpoint(prefix, epoch, save_optimizer_states=True)`` /
  ``save_optimizer_states``): a dict ``{index: state}``. The index is the parameter's
  position among the symbol's arguments (inputs excluded), so give the symbol file
  (``symbol="prefix-symbol.json"``) or the names in that order (``order=[...]``).
  With several devices Module updates on its kvstore, which keys the states by
  parameter *name* (no order needed).
  **The file holds no update count**: pass ``begin_num_update`` (the number of updates
  MXNet made, e.g. ``epochs * batches_per_epoch``), and the optimizer (``optimizer=``,
  built as MXNet's was). Nadam's ``m_schedule`` is not in these files either: MXNet
  restarts it at 1 when a Module resumes, and so does this loader.
* **Trainer** (``gluon.Trainer.save_states``): ``(states, optimizer)``. The index is the
  position in the Trainer's parameter list, which MXNet 1.9.1 sorts by name when given
  ``collect_params()`` (the default here; ``order=`` otherwise). The optimizer's
  hyperparameters, update counts and scheduler position are read back and the mxjax
  optimizer is rebuilt (``result.optimizer``).

Gluon's Trainer gives the optimizer no parameter names: MXNet's LARS then exempts no
bias from its trust ratio (it names index ``i`` ``str(i)``, [Q2]), while mxjax exempts
``*_bias``/``*_beta``/``*_gamma`` by leaf name; key the tree by index strings
(``order=["0", "1", ...]``) to continue such a run exactly. LBSGD Trainer files (its
accumulation state lives on the optimizer) are refused.

MXNet 2.0.0's Trainer files of its optimizers that mxjax implements with 2.0's semantics
(``AdamW``, ``AdaBelief``, ``LANS``; arrays in the V3 record format) are read too; other
MXNet 2.0 files are refused by name.

The file is never unpickled: :mod:`mxjax.nd._pickle` decodes it without executing it.
Float16 ``multi_precision`` layouts (``(state, master)`` for SGD, NAG and LARS,
``(master, state)`` for the others) become mxjax's (master copy last). Parameters with
no state in the file (frozen in MXNet) start fresh and are listed in
``result.missing``, as MXNet would create their state on first update.

>>> r = load_states("run-0010.states", params, optimizer=mx.optimizer.SGD(momentum=0.9),
...                 symbol="run-symbol.json", begin_num_update=1000)  # doctest: +SKIP
>>> params, state = r.optimizer.update(grads, r.state, params)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import lr_scheduler as _sched
from . import optimizer as _opt
from ._names import leaf_names
from ._typing import Params
from .nd._pickle import MXNET2_CLASSES, MXNetStatesError, Record, decode
from .optimizer._contract import MASTER, OptState

__all__ = ["MXNetStates", "MXNetStatesError", "load_states", "symbol_param_order"]

_MASTER_LAST = {"sgd", "ccsgd", "nag", "lars"}
"""Optimizers whose float16 multi-precision state is ``(state, master)`` in MXNet."""
_RENAMED = {"float_stable_eps": "eps"}
"""MXNet attributes stored under another name than their constructor argument."""
_AUX_INPUTS = {"BatchNorm": (3, 4), "BatchNorm_v1": (3, 4), "_contrib_SyncBatchNorm": (3, 4),
               "SyncBatchNorm": (3, 4), "_contrib_BatchNormWithReLU": (3, 4)}


@dataclasses.dataclass(frozen=True)
class MXNetStates:
    """What :func:`load_states` read.

    Attributes:
      state: the mxjax ``OptState`` for ``params`` (``count`` = MXNet's ``num_update``).
      optimizer: the mxjax optimizer to continue with (Trainer files: rebuilt from the
        file; Module files: the one passed in).
      kind: ``"module"`` or ``"trainer"``.
      num_update: MXNet's ``num_update`` (Module files: ``begin_num_update``).
      counts: each parameter's update count (Trainer files; Module: ``num_update``).
      hyperparams: the pickled optimizer's attributes (Trainer files), else ``{}``.
      scheduler: the scheduler's class and attributes as pickled (its position:
        ``count``, current ``base_lr``, ...), or ``None``.
      missing: parameters with no state in the file (started fresh).
    """

    state: OptState
    optimizer: _opt.Optimizer
    kind: str
    num_update: int
    counts: dict[str, int]
    hyperparams: dict[str, Any]
    scheduler: dict[str, Any] | None
    missing: tuple[str, ...]


def symbol_param_order(
    symbol: str | os.PathLike[str] | dict[str, Any],
    data_names: Sequence[str] = ("data",),
    label_names: Sequence[str] = ("softmax_label",),
) -> list[str]:
    """The parameter names of an MXNet symbol file in Module's index order.

    ``list_arguments()`` order (the variables in the file's node order, auxiliary
    states of BatchNorm-like ops excluded) without the data and label inputs, as
    ``Module`` numbers them.
    """
    graph = symbol
    if not isinstance(symbol, dict):
        with open(symbol, encoding="utf-8") as f:
            graph = json.load(f)
    try:
        nodes = graph["nodes"]
        aux = {
            int(inp[0])
            for n in nodes
            for k, inp in enumerate(n.get("inputs", ()))
            if k in _AUX_INPUTS.get(n.get("op"), ())
        }
        names = [n["name"] for i, n in enumerate(nodes) if n["op"] == "null" and i not in aux]
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise ValueError(f"not an MXNet symbol JSON: {e!r}") from None
    skip = set(data_names) | set(label_names)
    return [n for n in names if n not in skip]


def _arrays(state: Any, where: str) -> list[np.ndarray]:
    """An MXNet per-parameter state (None, an array, or tuples/lists of them), flat."""
    if state is None:
        return []
    if isinstance(state, np.ndarray):
        return [state]
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _arrays(s, where)]
    raise MXNetStatesError(f"{where}: unexpected state of type {type(state).__name__}")


def _slots(name: str, state: Any, opt_name: str, master: bool, where: str) -> list[np.ndarray]:
    if not master:
        return _arrays(state, where)
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise MXNetStatesError(f"{where}: expected a (state, master copy) pair for {name!r}")
    inner, copy = (state[0], state[1]) if opt_name in _MASTER_LAST else (state[1], state[0])
    return _arrays(inner, where) + _arrays(copy, where)


def _slot_order(optimizer: _opt.Optimizer, have: Any) -> list[str]:
    """The slot names of ``have`` in MXNet's array order (the rule's, master last)."""
    if optimizer.rule is None:
        raise TypeError(
            f"MXNet .states are read and written for the built-in optimizers, not "
            f"{type(optimizer).__name__} (an MXNet-style subclass)"
        )
    return [k for k in (*optimizer.rule.slots, MASTER) if k in have]


def to_mxnet(
    optimizer: _opt.Optimizer, slots: dict[str, jax.Array], master: bool
) -> Any:
    """One parameter's slots (``opt.slots(state)[name]``) as MXNet's per-parameter
    state (inverse of :func:`from_mxnet`): ``None``, an array, or a tuple;
    ``(state, master)``/``(master, state)`` under multi-precision."""
    arrays = [np.asarray(slots[k]) for k in _slot_order(optimizer, slots)]
    copy = arrays.pop() if master else None
    if optimizer.name == "dcasgd":  # (momentum or None, previous weight)
        inner: Any = tuple(arrays) if len(arrays) == 2 else (None, *arrays)
    else:
        inner = None if not arrays else arrays[0] if len(arrays) == 1 else tuple(arrays)
    if not master:
        return inner
    return (inner, copy) if optimizer.name in _MASTER_LAST else (copy, inner)


def from_mxnet(
    optimizer: _opt.Optimizer,
    name: str,
    state: Any,
    fresh: dict[str, jax.Array],
    master: bool,
    where: str,
) -> dict[str, jax.Array]:
    """MXNet's per-parameter ``state`` of parameter ``name`` as its mxjax slots
    ``{slot name: array}``, checked against ``fresh`` (its slots in a new state)."""
    keys = _slot_order(optimizer, fresh)
    arrays = _slots(name, state, optimizer.name, master, where)
    want = [(tuple(fresh[k].shape), str(fresh[k].dtype)) for k in keys]
    got = [(tuple(a.shape), str(a.dtype)) for a in arrays]
    if want != got:
        raise MXNetStatesError(
            f"{where}: the state of {name!r} holds {got}, this optimizer keeps {want} "
            "(another optimizer, momentum or parameter order?)"
        )
    return {k: jnp.asarray(a) for k, a in zip(keys, arrays)}


def _schedule(rec: Record | None) -> tuple[Any, dict[str, Any] | None]:
    """The pure mxjax schedule continuing a pickled MXNet scheduler, and its record."""
    if rec is None:
        return None, None
    a = dict(rec.attrs)
    warm = {k: a[k] for k in ("warmup_steps", "warmup_begin_lr", "warmup_mode") if k in a}
    try:
        if rec.name == "FactorScheduler":  # base_lr was decayed count/step times
            orig = a["base_lr"] / a["factor"] ** (a["count"] // a["step"])
            s = _sched.FactorScheduler(a["step"], a["factor"], a["stop_factor_lr"], orig, **warm)
        elif rec.name == "MultiFactorScheduler":
            orig = a["base_lr"] / a["factor"] ** a["cur_step_ind"]
            s = _sched.MultiFactorScheduler(list(a["step"]), a["factor"], orig, **warm)
        elif rec.name == "PolyScheduler":
            s = _sched.PolyScheduler(
                a["max_update"], a["base_lr_orig"], a["power"], a["final_lr"], **warm
            )
        elif rec.name == "CosineScheduler":
            s = _sched.CosineScheduler(a["max_update"], a["base_lr_orig"], a["final_lr"], **warm)
        else:
            raise MXNetStatesError(f"scheduler {rec.name} cannot be continued")
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise MXNetStatesError(f"malformed {rec.name} in the file: {e!r}") from None
    return s, {"class": rec.name, **a}


def _rebuild(rec: Record, order: list[str], num_update: int) -> tuple[_opt.Optimizer, Any]:
    """The mxjax optimizer equal to a pickled MXNet optimizer, and its scheduler record."""
    a = rec.attrs
    name = rec.name.lower()
    if name not in _opt.registry or name in ("optimizer", "test"):
        raise MXNetStatesError(f"optimizer class {rec.name} has no mxjax counterpart")
    if name == "lbsgd":
        raise MXNetStatesError(
            "LBSGD keeps its accumulated gradients and warmup state on the optimizer "
            "object; Trainer files of LBSGD are not supported"
        )
    factory = _opt.registry.get(name)
    own = set(inspect.signature(factory).parameters) - {"learning_rate", "common"}
    a = {_RENAMED.get(k, k): v for k, v in a.items()}
    rescale = a.get("rescale_grad")
    if isinstance(rescale, np.ndarray) and rescale.size == 1:  # MXNet 2.0's fused step
        a["rescale_grad"] = float(rescale.reshape(()))
    kw: dict[str, Any] = {k: a[k] for k in own if k in a}
    sched_rec = a.get("lr_scheduler")
    if sched_rec is not None and not isinstance(sched_rec, Record):
        raise MXNetStatesError("lr_scheduler in the file is not a scheduler")
    schedule, sched_info = _schedule(sched_rec)
    kw["learning_rate"] = None if schedule is not None else a.get("lr")
    if schedule is not None:
        kw["lr_scheduler"] = schedule
    for k in ("wd", "rescale_grad", "clip_gradient", "multi_precision"):
        if a.get(k) is not None:
            kw[k] = a[k]
    for k in ("lr_mult", "wd_mult"):
        table = a.get(k, {})
        if not isinstance(table, dict):
            raise MXNetStatesError(f"{k} in the file is not a dict")
        mult = {order[i] if isinstance(i, int) and i < len(order) else i: v
                for i, v in table.items()}
        if mult:
            kw[k] = mult
    kw["begin_num_update"] = num_update
    try:
        return factory(**kw), sched_info
    except (TypeError, ValueError) as e:
        raise MXNetStatesError(f"cannot rebuild {rec.name} from the file: {e}") from None


def load_states(
    source: str | os.PathLike[str] | bytes,
    params: Params,
    *,
    optimizer: _opt.Optimizer | None = None,
    order: Sequence[str] | None = None,
    symbol: str | os.PathLike[str] | None = None,
    data_names: Sequence[str] = ("data",),
    label_names: Sequence[str] = ("softmax_label",),
    begin_num_update: int | None = None,
    num_device: int = 1,
) -> MXNetStates:
    """Read an MXNet 1.9.1 ``.states`` file (Module's or Trainer's) for ``params``.

    Args:
      source: the file path, or its bytes.
      params: the parameter tree to continue training (leaves named as MXNet names them:
        ``fc1_weight``; see :func:`mxjax.optimizer.leaf_names`).
      optimizer: the mxjax optimizer (required for Module files; for Trainer files it
        replaces the one rebuilt from the file).
      order: the parameter names in MXNet's index order, frozen ones included (it may
        name parameters that ``params`` leaves out, if the file has no state for them).
        Default: from ``symbol`` for Module files, the sorted names of ``params`` for
        Trainer files (``Trainer(net.collect_params())``): pass it when ``params`` leaves
        a parameter of the Trainer out.
      symbol: a Module's ``prefix-symbol.json`` (with ``data_names``/``label_names``).
      begin_num_update: MXNet's ``num_update`` (required for Module files, which do not
        store it; for Trainer files it overrides the stored one).
      num_device: Module's device count (its index is ``position * num_device + k``;
        device 0's state is used).

    Raises:
      MXNetStatesError: the file is malformed, hostile, from MXNet 2.0, or does not fit
        ``params``/the optimizer.
      TypeError / ValueError: bad arguments.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    obj, mxnet2 = decode(data)
    names = leaf_names(params)
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], Record):
        kind, states, rec = "trainer", obj[0], obj[1]
    elif isinstance(obj, dict):
        kind, states, rec = "module", obj, None
    else:
        raise MXNetStatesError("neither a Module (dict) nor a Trainer ((states, optimizer)) file")
    if mxnet2 and (rec is None or (rec.module, rec.name) not in MXNET2_CLASSES):
        raise MXNetStatesError(
            "an MXNet 2.0 .states file (V3 arrays) without an AdamW, AdaBelief or LANS "
            "optimizer: only those MXNet 2.0 Trainer files are supported"
        )
    if not isinstance(states, dict):
        raise MXNetStatesError("the states are not a dict by index")
    if order is None and symbol is not None:
        order = symbol_param_order(symbol, data_names, label_names)
    if order is None:
        if kind == "module" and not all(isinstance(k, str) for k in states):
            raise TypeError("Module files need symbol= (prefix-symbol.json) or order=")
        order = sorted(names)
    order = list(order)
    if len(set(order)) != len(order) or not all(isinstance(n, str) for n in order):
        raise ValueError(f"order must name each parameter once, got {order}")
    absent = sorted(set(names) - set(order))
    if absent:
        raise ValueError(f"parameters {absent} are not in order ({order})")
    if not isinstance(num_device, int) or num_device < 1:
        raise ValueError(f"num_device must be a positive int, got {num_device!r}")

    by_name: dict[str, Any] = {}
    for key, st in states.items():
        if isinstance(key, str):
            pname = key
        elif isinstance(key, int) and not isinstance(key, bool):
            if key % num_device:
                continue
            if not 0 <= key // num_device < len(order):
                raise MXNetStatesError(
                    f"state index {key} is beyond the {len(order)} parameters in order"
                )
            pname = order[key // num_device]
        else:
            raise MXNetStatesError(f"state key {key!r} is neither an index nor a name")
        if pname not in names:
            raise MXNetStatesError(
                f"the file has a state for {pname!r}, which is not in params (a frozen "
                "parameter's state is absent, a trained one's must be loaded)"
            )
        by_name[pname] = st

    if kind == "trainer":
        a = rec.attrs
        counts_by_idx = a.get("_index_update_count", {})
        if not isinstance(counts_by_idx, dict) or not all(
            isinstance(c, int) for c in counts_by_idx.values()
        ):
            raise MXNetStatesError("_index_update_count in the file is not {index: int}")
        num_update = a.get("num_update") if begin_num_update is None else begin_num_update
        if not isinstance(num_update, int):
            raise MXNetStatesError(f"num_update {num_update!r} in the file is not an int")
        counts = {order[i]: c for i, c in counts_by_idx.items() if isinstance(i, int) and i < len(order)}
        if len(set(counts.values())) > 1:
            warnings.warn(
                f"MXNet's per-parameter update counts differ ({counts}); mxjax keeps one "
                f"count, num_update={num_update}",
                UserWarning,
                stacklevel=2,
            )
        rebuilt, sched = _rebuild(rec, order, num_update)
        optimizer = rebuilt if optimizer is None else optimizer
        hyper = {k: v for k, v in a.items() if not isinstance(v, Record)}
    else:
        if optimizer is None:
            raise TypeError("Module .states files hold no optimizer: pass optimizer=")
        if begin_num_update is None:
            raise TypeError(
                "Module .states files hold no update count: pass begin_num_update= "
                "(the number of updates MXNet made)"
            )
        num_update, sched, hyper = begin_num_update, None, {}
        counts = dict.fromkeys(by_name, num_update)
    if not isinstance(optimizer, _opt.Optimizer) or optimizer.rule is None:
        raise TypeError(f"optimizer must be a built-in mxjax optimizer, got {optimizer!r}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float16 without multi_precision
        fresh = optimizer.slots(optimizer.init(params))
    mp = bool(optimizer.hyperparams.get("multi_precision"))
    slots, missing = dict(fresh), []
    for pname, w in zip(names, jax.tree_util.tree_leaves(params)):
        if pname not in by_name:
            missing.append(pname)
            continue
        master = mp and jnp.result_type(w) in (jnp.float16, jnp.bfloat16)
        slots[pname] = from_mxnet(
            optimizer, pname, by_name[pname], fresh.get(pname, {}), master,
            "states file",
        )
    extra = None
    cur_lr = rec.attrs.get("cur_lr") if rec is not None else None
    lars_ratio = optimizer.name == "lars" and optimizer.rule.init_extra is not None
    if lars_ratio and isinstance(cur_lr, float):
        extra = (jnp.asarray(cur_lr, jnp.float32), jnp.asarray(True))  # MXNet's cur_lr
    m = rec.attrs.get("m_schedule") if rec is not None else None
    if optimizer.name == "nadam" and m is not None:  # Module files: restarts at 1, as MXNet
        if not isinstance(m, float) or not math.isfinite(m):
            raise MXNetStatesError(f"Nadam's m_schedule {m!r} in the file is not a float")
        extra = jnp.asarray(m, jnp.float32)
    state = optimizer.state_from_slots(slots, params, count=num_update, extra=extra)
    return MXNetStates(
        state=state,
        optimizer=optimizer,
        kind=kind,
        num_update=num_update,
        counts=counts,
        hyperparams=hyper,
        scheduler=sched,
        missing=tuple(missing),
    )
