r"""Save and restore optimizer states (and params) without pickle.

A checkpoint is one ``.npz`` file (a zip of ``.npy`` arrays, written and read with
``allow_pickle=False``) holding every array leaf plus a JSON description stored as a
``uint8`` array named ``__mxjax_checkpoint__``: the format version, each leaf's tree
path, shape and dtype, and the optimizer's name and hyperparameters. Restoring is
bit-identical, so training continues exactly as if it had not been interrupted.

**One state, any layout.** An mxjax optimizer state (an ``OptState``) is stored in a
form that does not depend on its layout: ``count``, ``skipped``, ``extra`` and the
slots by parameter name and slot name, as ``opt.slots(state)`` gives them (paths
``['slots']['fc_weight']['mean']``). It loads into the layout of the optimizer (or
template) it is loaded for, so a checkpoint saved with ``multi_tensor=True`` or packed
parameters continues with ``multi_tensor=False`` and the other way round, bit for bit
where the two layouts compute the same bits. Any other state (an optax state of
:func:`~mxjax.adapters.from_optax`) is stored as its tree. Files of format 1 (mxjax
before the layout-independent form) load too: a per-leaf state is converted (given
``optimizer=``); a multi-tensor state of format 1 is refused with a message::

    >>> import jax.numpy as jnp, mxjax as mx, tempfile, os
    >>> from mxjax import checkpoint
    >>> opt = mx.optimizer.create("adam", learning_rate=0.1)
    >>> params = {"w": jnp.ones(3)}
    >>> params, state = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
    >>> path = os.path.join(tempfile.mkdtemp(), "step1.npz")
    >>> checkpoint.save(path, state, params, optimizer=opt)
    >>> ckpt = checkpoint.load(path, optimizer=opt, like_params=params)
    >>> int(ckpt.state.count), ckpt.params["w"].tolist() == params["w"].tolist()
    (1, True)

What is checked on :func:`load` (each failure is a ``ValueError`` naming the mismatch):

* the optimizer's name, and its hyperparameters (unless ``check_hyperparams=False``,
  e.g. to resume with a new learning rate), except ``multi_tensor``, which only chooses
  the layout;
* the tree paths of the state and params against the templates (``like_state``, or the
  state ``optimizer.init(like_params)`` would build, and ``like_params``), then every
  leaf's shape and dtype.

A file that cannot be read as a checkpoint (truncated, corrupted, not a checkpoint, or
written by a newer format) raises :class:`CheckpointError`; a missing file raises
``FileNotFoundError``.

**Hyperparameters** are stored as JSON: ``None``, bools, ints, strings, finite floats
(exactly), and lists/tuples/string-keyed dicts of those. Any other value, such as an
lr scheduler or another callable, is stored as its ``repr`` with memory addresses
(``" at 0x..."``) removed, and compared as that string: mxjax schedulers, whose repr
lists their arguments, compare by value; a plain function compares by its qualified
name only.

**Dtypes** numpy cannot store natively (``bfloat16``, the ``float8`` types, ``int4``,
...) are stored as unsigned-integer views of the same width, with the real dtype in the
JSON, and viewed back on load. Typed PRNG keys (``jax.random.key``) are stored as their
key data with the implementation's name, and re-wrapped on load.

MXNet's own ``.states`` files (``Updater.get_states`` pickles them, and unpickling runs
arbitrary code) are read by :func:`mxjax.mxnet_states.load_states`, which decodes the
pickle without executing it.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._files import atomic_write
from ._names import path_name
from ._npz import Member, open_npz
from ._typing import Params, PyTree
from .optimizer import Optimizer, OptState
from .optimizer import registry as optimizer_registry
from .optimizer._contract import COMMON_DEFAULTS, MASTER
from .optimizer._layout import fill_slots, slots_view

__all__ = ["Checkpoint", "CheckpointError", "describe", "load", "save"]

FORMAT, VERSION = "mxjax.checkpoint", 2
_META = "__mxjax_checkpoint__"
_READS = (1, 2)  # the format versions load() reads
_LAYOUT_ONLY = ("multi_tensor",)  # not compared: a state loads into any layout


class CheckpointError(Exception):
    """The file cannot be read as an mxjax checkpoint (corrupted, truncated, not a
    checkpoint, or a newer format version)."""


class Checkpoint(NamedTuple):
    """What :func:`load` returns.

    Attributes:
      state: the optimizer state, in the template's tree structure.
      params: the params; ``None`` when ``like_params`` was not given or the
        checkpoint holds none.
      optimizer: ``{"name": ..., "hyperparams": {...}}`` as stored (hyperparameters in
        their JSON encoding), or ``None`` when saved without ``optimizer=``.
    """

    state: PyTree
    params: Params | None
    optimizer: dict[str, Any] | None


# ------------------------------------------------------------------------------ save


def _encode(value: Any) -> Any:
    """A JSON-able, process-independent encoding of one hyperparameter."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    return {"__repr__": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))}


def _encode_optimizer(opt: Optimizer) -> dict[str, Any]:
    hp = {str(k): _encode(v) for k, v in opt.hyperparams.items()}
    return {"name": opt.name, "hyperparams": json.loads(json.dumps(hp))}


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _storable(name: str, x: Any) -> tuple[np.ndarray, dict[str, Any]]:
    if _is_key(x):  # typed PRNG keys: store the key data and the implementation
        data = np.asarray(jax.device_get(jax.random.key_data(x)))
        spec = {"path": name, "shape": list(jnp.shape(x)), "dtype": str(x.dtype)}
        return data, {**spec, "key_impl": str(jax.random.key_impl(x))}
    arr = np.asarray(jax.device_get(x))
    if arr.dtype.hasobject:
        raise TypeError(f"leaf {name} has dtype object; only numeric arrays are saved")
    spec: dict[str, Any] = {
        "path": name,
        "shape": list(arr.shape),
        "dtype": arr.dtype.name,
    }
    if arr.dtype.kind == "V":  # ml_dtypes (bfloat16, float8, int4): store the bits
        arr = arr.view(f"uint{8 * arr.dtype.itemsize}")
        spec["stored_as"] = arr.dtype.name
    return arr, spec


def _flatten(tree: PyTree) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), x) for p, x in flat]


def save(
    path: str | os.PathLike[str],
    state: PyTree,
    params: Params | None = None,
    *,
    optimizer: Optimizer | None = None,
) -> None:
    """Write ``state`` (and ``params``) to ``path`` as an ``.npz`` checkpoint.

    The file is written to a temporary file of its own in the same directory, flushed,
    ``fsync``-ed and renamed (:func:`mxjax._files.atomic_write`), so an interrupted
    save never leaves a half-written checkpoint under ``path``, and of several threads
    or processes saving to one path the last complete one wins. ``path`` is used as given (no
    ``.npz`` suffix is added).

    Args:
      path: the file to write.
      state: the optimizer state (any pytree of arrays).
      params: the parameters, saved too when given.
      optimizer: the optimizer that made ``state``; its name and hyperparameters are
        recorded and checked by :func:`load`.
    """
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "optimizer": None if optimizer is None else _encode_optimizer(optimizer),
        "state_form": "slots" if isinstance(state, OptState) else "tree",
    }
    if isinstance(state, OptState):
        state = _by_name(state)
    arrays: dict[str, np.ndarray] = {}
    for kind, tree in (("state", state), ("params", params)):
        if kind == "params" and tree is None:
            meta[kind] = None
            continue
        specs = []
        for i, (name, leaf) in enumerate(_flatten(tree)):
            arr, spec = _storable(f"{kind}{name}", leaf)
            spec["path"] = name
            arrays[f"{kind}_{i}"] = arr
            specs.append(spec)
        meta[kind] = specs
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for key, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                zf.writestr(f"{key}.npy", buf.getvalue())

    atomic_write(path, write)


# ------------------------------------------------------------------------------ load


def _read(
    path: str | os.PathLike[str], *, data: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and self-check the file; any defect is a :class:`CheckpointError`.

    The description is read first, and every member's header is checked against it
    before any array data is decompressed; ``data=False`` stops there (``describe``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        with open(path, "rb") as f, open_npz(f, CheckpointError, path) as npz:
            if _META not in npz.members:
                raise CheckpointError(f"{path}: not an mxjax checkpoint (no {_META})")
            meta_member = npz.members[_META]
            if meta_member.dtype != np.uint8 or len(meta_member.shape) != 1:
                raise CheckpointError(f"{path}: not an mxjax checkpoint")
            meta = json.loads(npz.read(_META).tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not an mxjax checkpoint")
            if meta.get("version") not in _READS:
                raise CheckpointError(
                    f"{path}: checkpoint format version {meta.get('version')!r}; this "
                    f"mxjax reads versions {list(_READS)}"
                )
            _check_meta(path, meta)
            keys = [
                (f"{kind}_{i}", kind, spec)
                for kind in ("state", "params")
                for i, spec in enumerate(meta[kind] or [])
            ]
            for key, kind, spec in keys:  # headers only: nothing decompressed yet
                if key not in npz.members:
                    raise CheckpointError(f"{path}: array {kind}{spec['path']} is missing")
                _check_header(path, kind, spec, npz.members[key])
            arrays = {
                key: _restore_array(path, kind, spec, npz.read(key))
                for key, kind, spec in (keys if data else [])
            }
    except CheckpointError:
        raise
    except Exception as e:  # zip, npy, JSON and jax readers each raise their own types
        raise CheckpointError(
            f"{path}: corrupted or truncated checkpoint ({type(e).__name__}: {e})"
        ) from e
    return meta, arrays


def _check_header(path: str, kind: str, spec: dict[str, Any], member: Member) -> None:
    """A member's ``.npy`` header against its description (before reading its data)."""
    if "key_impl" in spec:  # key data: the shape gains the implementation's key axes
        ok = list(member.shape[: len(spec["shape"])]) == spec["shape"]
    elif "stored_as" in spec:
        ok = member.dtype.name == spec["stored_as"] and list(member.shape) == spec["shape"]
    else:
        ok = member.dtype.name == spec["dtype"] and list(member.shape) == spec["shape"]
    if not ok:
        raise CheckpointError(
            f"{path}: array {kind}{spec['path']} does not match its description"
        )


def _restore_array(path: str, kind: str, spec: dict[str, Any], arr: np.ndarray) -> np.ndarray:
    if "key_impl" in spec:  # must re-wrap to the described keys
        keys = jax.random.wrap_key_data(arr, impl=spec["key_impl"])
        if list(keys.shape) != spec["shape"] or str(keys.dtype) != spec["dtype"]:
            raise CheckpointError(
                f"{path}: keys {kind}{spec['path']} do not match their description"
            )
        return arr
    if "stored_as" in spec:
        arr = arr.view(jnp.dtype(spec["dtype"]))
    if list(arr.shape) != spec["shape"] or arr.dtype.name != spec["dtype"]:
        raise CheckpointError(
            f"{path}: array {kind}{spec['path']} does not match its description"
        )
    return arr


def _check_meta(path: str, meta: dict[str, Any]) -> None:
    """The description's schema, so that :func:`load` can trust it afterwards."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: malformed checkpoint description ({what})")

    missing = [k for k in ("optimizer", "state", "params") if k not in meta]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    if meta.get("state_form", "tree") not in ("tree", "slots"):
        raise bad("state_form")
    opt = meta["optimizer"]
    if opt is not None and not (
        isinstance(opt, dict)
        and isinstance(opt.get("name"), str)
        and isinstance(opt.get("hyperparams"), dict)
    ):
        raise bad("optimizer")
    for kind in ("state", "params"):
        specs = meta.get(kind, ())
        if kind == "params" and specs is None:
            continue
        if not isinstance(specs, list):
            raise bad(kind)
        for spec in specs:
            if not (
                isinstance(spec, dict)
                and isinstance(spec.get("path"), str)
                and isinstance(spec.get("dtype"), str)
                and isinstance(spec.get("shape"), list)
                and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0
                    for d in spec["shape"]
                )
                and isinstance(spec.get("key_impl", ""), str)
            ):
                raise bad(f"{kind} leaf {spec!r}")


def _effective(name: str, hp: dict[str, Any]) -> dict[str, Any]:
    """Encoded hyperparameters with every default filled in, so that an argument
    given explicitly at its default (``wd=0.0``) equals one left out."""
    try:
        factory = optimizer_registry.get(name)
    except ValueError:  # a custom optimizer: only the common defaults are known
        defaults = dict(COMMON_DEFAULTS)
    else:
        own = inspect.signature(factory).parameters.values()
        defaults = {
            **COMMON_DEFAULTS,
            **{p.name: p.default for p in own if p.default is not p.empty},
        }
    out = {**json.loads(json.dumps({k: _encode(v) for k, v in defaults.items()})), **hp}
    if out.get("learning_rate") is None and out.get("lr_scheduler") is None:
        out["learning_rate"] = 0.01  # MXNet's rule without a scheduler [Q1]
    for k in ("lr_mult", "wd_mult"):  # None and {} both mean no multipliers
        out[k] = out.get(k) or {}
    return out


def _check_optimizer(meta: dict[str, Any], opt: Optimizer, check_hp: bool) -> None:
    saved = meta["optimizer"]
    if saved is None:
        raise ValueError(
            f"the checkpoint was saved without optimizer=, so it cannot be checked "
            f"against {opt.name!r}; load it with optimizer=None and a like_state"
        )
    if saved["name"] != opt.name:
        raise ValueError(
            f"the checkpoint holds the state of optimizer {saved['name']!r}, not "
            f"{opt.name!r}"
        )
    if not check_hp:
        return
    want = _effective(opt.name, _encode_optimizer(opt)["hyperparams"])
    got = _effective(opt.name, saved["hyperparams"])
    absent = "<absent>"
    diff = [
        f"{k}: checkpoint {got.get(k, absent)!r}, optimizer {want.get(k, absent)!r}"
        for k in sorted((set(want) | set(got)) - set(_LAYOUT_ONLY))
        if want.get(k, absent) != got.get(k, absent)
    ]
    if diff:
        raise ValueError(
            f"optimizer {opt.name!r} has other hyperparameters than the checkpoint "
            "(pass check_hyperparams=False to resume with new ones): " + "; ".join(diff)
        )


def _leaf_spec(x: Any) -> tuple[tuple[int, ...], str]:
    if _is_key(x):
        return tuple(x.shape), str(x.dtype)
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return tuple(np.shape(x)), jnp.dtype(dtype).name


def _restore_leaf(arr: np.ndarray, like: Any, spec: dict[str, Any]) -> Any:
    if "key_impl" in spec:
        keys = jax.random.wrap_key_data(arr, impl=spec["key_impl"])
        sharding = getattr(like, "sharding", None)
        return keys if sharding is None else jax.device_put(keys, sharding)
    if isinstance(like, jax.Array):
        return jax.device_put(arr, like.sharding)
    if isinstance(like, jax.ShapeDtypeStruct):
        sharding = getattr(like, "sharding", None)
        return jnp.asarray(arr) if sharding is None else jax.device_put(arr, sharding)
    if isinstance(like, np.ndarray):
        return arr.copy()
    return arr.item() if arr.ndim == 0 else arr


def _unflatten(
    kind: str, specs: list[dict[str, Any]], arrays: dict[str, np.ndarray], like: PyTree
) -> PyTree:
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    want = [jax.tree_util.keystr(p) for p, _ in flat]
    got = {s["path"]: i for i, s in enumerate(specs)}  # a format-1 state: other order
    if sorted(want) != sorted(got) or len(got) != len(specs):
        missing = [p for p in want if p not in got]
        extra = [s["path"] for s in specs if s["path"] not in set(want)]
        raise ValueError(
            f"the {kind} tree differs from the checkpoint's: leaves expected but not "
            f"in the checkpoint: {missing or 'none'}; leaves in the checkpoint but not "
            f"expected: {extra or 'none'}"
        )
    leaves = []
    for path, (_, like_leaf) in zip(want, flat, strict=True):
        i = got[path]
        spec = specs[i]
        shape, dtype = _leaf_spec(like_leaf)
        if (list(shape), dtype) != (spec["shape"], spec["dtype"]):
            raise ValueError(
                f"{kind} leaf {spec['path']}: the checkpoint has shape "
                f"{tuple(spec['shape'])} dtype {spec['dtype']}, expected shape {shape} "
                f"dtype {dtype}"
            )
        leaves.append(_restore_leaf(arrays[f"{kind}_{i}"], like_leaf, spec))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _by_name(state: OptState) -> dict[str, Any]:
    """The layout-independent form of an mxjax state (see the module docs)."""
    return {
        "count": state.count,
        "skipped": state.skipped,
        "extra": state.extra,
        "slots": slots_view(state.slots),
    }


def _by_name_like(like: OptState) -> PyTree:
    """:func:`_by_name` of a template state, as shapes and dtypes."""
    return jax.eval_shape(_by_name, like)


def _into_layout(by_name: dict[str, Any], like: OptState) -> OptState:
    """The state ``by_name`` holds, in ``like``'s layout (and shardings)."""
    state = OptState(
        count=jnp.asarray(by_name["count"]),
        slots=fill_slots(like.slots, by_name["slots"]),
        extra=by_name["extra"],
        skipped=jnp.asarray(by_name["skipped"]),
    )
    place = lambda x, t: (  # noqa: E731
        x if getattr(t, "sharding", None) is None else jax.device_put(x, t.sharding)
    )
    return jax.tree.map(place, state, like)


def _param_paths(like: OptState) -> dict[str, str]:
    """``{keystr of a parameter's path: its name}`` for the parameters of ``like``."""
    slots = like.slots
    layout = getattr(getattr(slots, "leaves", None), "layout", None)  # multi-tensor
    trees = (
        [jax.tree_util.tree_unflatten(layout.treedef, layout.names)]
        if layout is not None
        else list(slots.values())
        if isinstance(slots, Mapping)
        else []
    )
    return {
        jax.tree_util.keystr(p): path_name(p)
        for tree in trees
        for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _specs_of_format_1(
    specs: list[dict[str, Any]], like: OptState, optimizer: Optimizer | None
) -> list[dict[str, Any]]:
    """A format-1 per-leaf state's leaf descriptions, with the layout-independent
    form's paths: ``.slots<param path>[i]`` becomes ``['slots'][name][slot]``,
    ``.count`` ``['count']``, ``.extra...`` ``['extra']...``."""
    if optimizer is None or optimizer.rule is None:
        raise ValueError(
            "this checkpoint is of format 1 (mxjax before the layout-independent form): "
            "load it with optimizer= (its slot names convert the state)"
        )
    slot_names = (*optimizer.rule.slots, MASTER)
    names = _param_paths(like)
    key = lambda *ks: jax.tree_util.keystr(tuple(map(jax.tree_util.DictKey, ks)))  # noqa: E731
    out = []
    for spec in specs:
        p = spec["path"]
        if p.startswith((".slots.leaves", ".slots.groups")):
            raise ValueError(
                "this checkpoint is of format 1 and holds a multi-tensor state in the "
                "old flat layout, which this mxjax does not convert: resume it with the "
                "mxjax that wrote it, or save it again without multi_tensor"
            )
        field = re.match(r"\.(count|skipped|extra|slots)", p)
        slot = re.fullmatch(r"\.slots(.*)\[(\d+)\]", p)
        if slot and slot.group(1) in names and int(slot.group(2)) < len(slot_names):
            path = key("slots", names[slot.group(1)], slot_names[int(slot.group(2))])
        elif field and field.group(1) != "slots":
            path = key(field.group(1)) + p[field.end() :]
        else:
            path = p  # reported as not expected by _unflatten
        out.append({**spec, "path": path})
    return out


def load(
    path: str | os.PathLike[str],
    *,
    like_state: PyTree | None = None,
    like_params: Params | None = None,
    optimizer: Optimizer | None = None,
    check_hyperparams: bool = True,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save`, checking it against templates.

    Args:
      path: the file.
      like_state: a state with the expected structure, shapes and dtypes (arrays or
        ``jax.ShapeDtypeStruct``; restored leaves take a template array's sharding).
        Defaults to ``jax.eval_shape(optimizer.init, like_params)``.
      like_params: the expected params; given, the saved params (if any) are restored
        too.
      optimizer: the optimizer that will continue; its name (and hyperparameters) must
        match the saved ones.
      check_hyperparams: compare the hyperparameters too (see the module docs).

    Returns:
      A :class:`Checkpoint` ``(state, params, optimizer)``.

    Raises:
      CheckpointError: the file is corrupted, truncated or not a checkpoint.
      ValueError: another optimizer, or another tree, shape or dtype than expected.
    """
    meta, arrays = _read(path)
    if optimizer is not None:
        _check_optimizer(meta, optimizer, check_hyperparams)
    if like_state is None:
        if optimizer is None or like_params is None:
            raise ValueError(
                "load needs the expected state: pass like_state, or optimizer and "
                "like_params"
            )
        like_state = jax.eval_shape(optimizer.init, like_params)
    specs = meta["state"]
    if meta["version"] == 1 and isinstance(like_state, OptState):
        specs = _specs_of_format_1(specs, like_state, optimizer)
    elif meta.get("state_form", "tree") != "tree" and not isinstance(like_state, OptState):
        raise ValueError(
            "the checkpoint holds an mxjax optimizer state (by parameter name): load it "
            "with an OptState template (like_state=opt.init(params), or optimizer and "
            f"like_params), not a {type(like_state).__name__}"
        )
    if isinstance(like_state, OptState):
        by_name = _unflatten("state", specs, arrays, _by_name_like(like_state))
        state = _into_layout(by_name, like_state)
    else:
        state = _unflatten("state", specs, arrays, like_state)
    params = None
    if like_params is not None and meta["params"] is not None:
        params = _unflatten("params", meta["params"], arrays, like_params)
    return Checkpoint(state, params, meta["optimizer"])


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's JSON description (format, optimizer, leaf paths/shapes/dtypes).

    Only the description and the arrays' headers are read (and checked against each
    other); no array data is decompressed.

    Raises:
      CheckpointError: the file is corrupted, truncated or not a checkpoint.
    """
    return _read(path, data=False)[0]
