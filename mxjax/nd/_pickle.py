r"""A pickle *reader* for MXNet's ``.states`` files that never executes pickle code.

MXNet pickles its optimizer states (``Updater.get_states``). A pickle is a program; this
module runs it on a small stack machine of its own (opcodes decoded by
:func:`pickletools.genops`) that builds only inert values:

* ``None``, bools, ints, floats, ``str``, ``bytes``, tuples, and :class:`PList` /
  :class:`PDict` for lists and dicts (keys are not hashed while reading, so a deeply
  nested key cannot crash the interpreter),
* the globals of a whitelist, each mapped to a harmless stand-in: MXNet's ``NDArray``
  (its pickled state is one ``.params`` record, parsed by :mod:`mxjax.nd`),
  ``bytearray`` / ``_codecs.encode`` of bytes, ``copyreg._reconstructor``, and MXNet
  1.9.1's optimizer and learning-rate scheduler classes, which become
  :class:`Record` (class name and attribute dict).

Every other global (``os.system``, ``builtins.eval``, ``getattr``, unknown classes), the
opcodes MXNet never writes (persistent ids, extension codes, ``INST``/``OBJ``, sets,
out-of-band buffers), a stand-in called with anything but bytes (``bytearray(10**12)``),
nesting deeper than :data:`MAX_DEPTH`, self-references, a structure that expands beyond
a budget proportional to the file (shared-reference bombs), truncated or trailing data
and MXNet 2.0 files are refused with :class:`MXNetStatesError` naming the cause. Memory
stays proportional to the input: each opcode adds at most one object.
"""

from __future__ import annotations

import io
import pickletools
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._format import V1_MAGIC, V2_MAGIC, V3_MAGIC, MXNetFileError
from ._load import _Reader, _record

MAX_DEPTH = 32
"""The deepest nesting accepted (MXNet's files nest 5 levels deep)."""


class MXNetStatesError(MXNetFileError):
    """An MXNet ``.states`` file is malformed, hostile, or of an unsupported kind."""


@dataclass(eq=False)
class PList:
    """A pickled list (kept unhashed while reading)."""

    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class PDict:
    """A pickled dict, as its (key, value) pairs in file order."""

    pairs: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class Record:
    """An instance of a whitelisted MXNet class: its class and attributes."""

    module: str
    name: str
    attrs: Any = None  # a PDict while reading, a dict after finishing

    def build(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(state, PDict) or self.attrs is not None:
            raise MXNetStatesError(f"unexpected state for a {self.name} object")
        self.attrs = state


@dataclass(eq=False)
class NDArrayStandIn:
    """MXNet's ``NDArray``: its ``handle`` is one ``.params`` record."""

    value: np.ndarray | None = None
    v3: bool = False  # MXNet 2.0's record format

    def build(self, state: Any) -> None:
        if not isinstance(state, PDict) or self.value is not None:
            raise MXNetStatesError("unexpected state for an NDArray")
        handle = dict((k, v) for k, v in state.pairs if k == "handle").get("handle")
        if not isinstance(handle, bytes):
            raise MXNetStatesError("an NDArray's state must be {'handle': bytes}")
        magic = struct.unpack("<I", handle[:4])[0] if len(handle) >= 4 else None
        if magic == V3_MAGIC:  # MXNet 2.0: V2's layout, numpy shape semantics
            self.v3 = True
            handle = struct.pack("<I", V2_MAGIC) + handle[4:]
        elif magic not in (V1_MAGIC, V2_MAGIC):
            shown = "none" if magic is None else f"{magic:#x}"
            raise MXNetStatesError(
                f"wrong NDArray record magic {shown} (expected {V2_MAGIC:#x})"
            )
        r = _Reader(handle)
        try:
            self.value = _record(r, 0)
        except MXNetStatesError:
            raise
        except MXNetFileError as e:
            raise MXNetStatesError(f"bad NDArray record: {e}") from None
        if r.remaining:
            raise MXNetStatesError(f"{r.remaining} trailing bytes after an NDArray record")


OPTIMIZER_CLASSES = frozenset(
    "Optimizer SGD ccSGD NAG RMSProp Adam AdaGrad AdaDelta Adamax Nadam DCASGD SGLD "
    "Signum FTML LBSGD Ftrl LARS LAMB Test".split()
)
SCHEDULER_CLASSES = frozenset(
    "LRScheduler FactorScheduler MultiFactorScheduler PolyScheduler CosineScheduler".split()
)
MXNET2_CLASSES = frozenset(
    {("mxnet.optimizer.adamW", "AdamW"), ("mxnet.optimizer.adabelief", "AdaBelief"),
     ("mxnet.optimizer.lans", "LANS")}
)
"""MXNet 2.0's optimizers whose semantics mxjax implements (its 2.0-only ones)."""
_MARK = object()


def _global(module: str, name: str) -> Any:
    if (module, name) in (("mxnet.ndarray.ndarray", "NDArray"), ("mxnet.ndarray", "NDArray")):
        return NDArrayStandIn
    if (module, name) in (("builtins", "bytearray"), ("__builtin__", "bytearray")):
        return "bytearray"
    if (module, name) == ("_codecs", "encode"):
        return "encode"
    if (module, name) in (("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")):
        return "reconstructor"
    if (module, name) in (("builtins", "object"), ("__builtin__", "object")):
        return "object"
    if module == "mxnet.optimizer.optimizer" and name in OPTIMIZER_CLASSES:
        return ("class", module, name)
    if (module, name) == ("mxnet.optimizer.contrib", "GroupAdaGrad"):
        return ("class", module, name)
    if module == "mxnet.lr_scheduler" and name in SCHEDULER_CLASSES:
        return ("class", module, name)
    if (module, name) in MXNET2_CLASSES:
        return ("class", module, name)
    if module.startswith(("mxnet.optimizer.", "mxnet.numpy")) or module == "mxnet.ndarray.numpy":
        raise MXNetStatesError(
            f"class {module}.{name} is from an MXNet 2.0 file; of MXNet 2.0's .states "
            "files only AdamW, AdaBelief and LANS Trainer files are supported (mxjax's "
            "other optimizers follow MXNet 1.9.1)"
        )
    raise MXNetStatesError(
        f"global {module}.{name} is not allowed in an MXNet .states file (refused "
        "without importing or calling it)"
    )


def _call(func: Any, args: Any) -> Any:
    """REDUCE / NEWOBJ of a whitelisted stand-in."""
    if not isinstance(args, tuple):
        raise MXNetStatesError("call arguments must be a tuple")
    if func is NDArrayStandIn and args in ((None,), ()):
        return NDArrayStandIn()
    if func == "bytearray" and len(args) == 1 and isinstance(args[0], bytes):
        return args[0]
    if func == "bytearray" and args == ():
        return b""
    if (
        func == "encode"
        and len(args) == 2
        and isinstance(args[0], str)
        and args[1] in ("latin1", "latin-1")
    ):
        return args[0].encode("latin-1")
    if isinstance(func, tuple) and args == ():
        return Record(func[1], func[2])
    if (
        func == "reconstructor"
        and len(args) == 3
        and isinstance(args[0], tuple)
        and args[1] == "object"
        and args[2] is None
    ):
        return Record(args[0][1], args[0][2])
    kinds = ", ".join(type(a).__name__ for a in args)
    raise MXNetStatesError(f"refused call of {func!r} with arguments of type ({kinds})")


def _pop_mark(stack: list[Any], marks: list[int]) -> list[Any]:
    if not marks:
        raise MXNetStatesError("malformed pickle: no MARK on the stack")
    k = marks.pop()
    items = stack[k:]
    del stack[k:]
    return items


def _pop(stack: list[Any], n: int = 1) -> Any:
    if len(stack) < n:
        raise MXNetStatesError("malformed pickle: stack underflow")
    items = stack[-n:]
    del stack[-n:]
    return items[0] if n == 1 else items


_SCALARS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE",
    "BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
}


def _run(data: bytes) -> tuple[Any, int]:
    """Execute the pickle on the inert machine; returns (value, opcode count)."""
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    n_ops = 0
    stream = io.BytesIO(data)
    try:
        for op, arg, pos in pickletools.genops(stream):
            n_ops += 1
            name = op.name
            if name in _SCALARS:
                stack.append(arg)
            elif name == "BYTEARRAY8":
                stack.append(bytes(arg))
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
            elif name in ("PROTO", "FRAME"):
                if name == "PROTO" and not 0 <= arg <= 5:
                    raise MXNetStatesError(f"unsupported pickle protocol {arg}")
                if name == "FRAME" and arg > len(data) - stream.tell():
                    raise MXNetStatesError(f"truncated pickle: a frame of {arg} bytes")
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "POP_MARK":
                _pop_mark(stack, marks)
            elif name == "POP":
                _pop(stack)
            elif name == "DUP":
                stack.append(stack[-1] if stack else _pop(stack))
            elif name == "EMPTY_LIST":
                stack.append(PList())
            elif name == "LIST":
                stack.append(PList(_pop_mark(stack, marks)))
            elif name in ("APPEND", "APPENDS"):
                items = [_pop(stack)] if name == "APPEND" else _pop_mark(stack, marks)
                target = stack[-1] if stack else None
                if not isinstance(target, PList):
                    raise MXNetStatesError(f"malformed pickle: {name} to a non-list")
                target.items.extend(items)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "TUPLE":
                stack.append(tuple(_pop_mark(stack, marks)))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                stack.append(tuple(_pop(stack, n)) if n > 1 else (_pop(stack),))
            elif name == "EMPTY_DICT":
                stack.append(PDict())
            elif name in ("DICT", "SETITEM", "SETITEMS"):
                flat = _pop(stack, 2) if name == "SETITEM" else _pop_mark(stack, marks)
                if len(flat) % 2:
                    raise MXNetStatesError(f"malformed pickle: odd item count in {name}")
                pairs = list(zip(flat[0::2], flat[1::2]))
                if name == "DICT":
                    stack.append(PDict(pairs))
                else:
                    target = stack[-1] if stack else None
                    if not isinstance(target, PDict):
                        raise MXNetStatesError(f"malformed pickle: {name} to a non-dict")
                    target.pairs.extend(pairs)
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise MXNetStatesError(f"malformed pickle: memo key {arg} is unset")
                stack.append(memo[arg])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack:
                    raise MXNetStatesError("malformed pickle: memoizing an empty stack")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, qual = arg.partition(" ")
                else:
                    module, qual = _pop(stack, 2)
                    if not isinstance(module, str) or not isinstance(qual, str):
                        raise MXNetStatesError("malformed pickle: STACK_GLOBAL of non-str")
                stack.append(_global(module, qual))
            elif name in ("REDUCE", "NEWOBJ"):
                func, args = _pop(stack, 2)
                stack.append(_call(func, args))
            elif name == "BUILD":
                state = _pop(stack)
                target = stack[-1] if stack else None
                if not isinstance(target, (Record, NDArrayStandIn)):
                    raise MXNetStatesError("malformed pickle: BUILD of a non-object")
                target.build(state)
            elif name == "STOP":
                if len(stack) != 1:
                    raise MXNetStatesError("malformed pickle: STOP with a bad stack")
                if stream.tell() != len(data):
                    raise MXNetStatesError(
                        f"{len(data) - stream.tell()} trailing bytes after the pickle"
                    )
                return stack[0], n_ops
            else:
                raise MXNetStatesError(
                    f"pickle opcode {name} (at byte {pos}) is not allowed in an MXNet "
                    ".states file"
                )
    except MXNetFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, struct.error, EOFError) as e:
        raise MXNetStatesError(f"malformed or truncated pickle: {e}") from None
    raise MXNetStatesError("truncated pickle: no STOP opcode")


class _Finisher:
    """Turn the machine's values into plain Python values, once per object, refusing
    self-references, nesting beyond MAX_DEPTH and structures whose expanded size
    exceeds ``budget`` (shared-reference bombs)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.done: dict[int, tuple[Any, int, int]] = {}  # id -> (value, depth, size)
        self.active: set[int] = set()
        self.keep: list[Any] = []  # keeps ids stable
        self.mxnet2 = False  # a V3 array or a 2.0 class was seen

    def __call__(self, obj: Any, depth: int = 0) -> tuple[Any, int, int]:
        if depth > MAX_DEPTH:
            raise MXNetStatesError(f"nesting deeper than {MAX_DEPTH} levels")
        if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
            return obj, 0, 1
        key = id(obj)
        if key in self.done:
            if depth + self.done[key][1] > MAX_DEPTH:
                raise MXNetStatesError(f"nesting deeper than {MAX_DEPTH} levels")
            return self.done[key]
        if key in self.active:
            raise MXNetStatesError("a self-referencing structure")
        self.active.add(key)
        self.keep.append(obj)
        if isinstance(obj, tuple):
            parts = [self(x, depth + 1) for x in obj]
            value: Any = tuple(p[0] for p in parts)
        elif isinstance(obj, PList):
            parts = [self(x, depth + 1) for x in obj.items]
            value = [p[0] for p in parts]
        elif isinstance(obj, PDict):
            parts = []
            value = {}
            for k, v in obj.pairs:
                kp, vp = self(k, depth + 1), self(v, depth + 1)
                if not isinstance(kp[0], (int, str, float, type(None))):
                    raise MXNetStatesError(f"dict key of type {type(kp[0]).__name__} refused")
                value[kp[0]] = vp[0]
                parts += [kp, vp]
        elif isinstance(obj, Record):
            self.mxnet2 |= (obj.module, obj.name) in MXNET2_CLASSES
            parts = [self(obj.attrs if obj.attrs is not None else PDict(), depth + 1)]
            value = Record(obj.module, obj.name, parts[0][0])
        elif isinstance(obj, NDArrayStandIn):
            if obj.value is None:
                raise MXNetStatesError("an NDArray without data (no handle)")
            parts, value = [], obj.value
            self.mxnet2 |= obj.v3
        else:  # a bare global or stand-in function left on the stack
            raise MXNetStatesError(f"an unexpected object {obj!r} in the file")
        size = 1 + sum(p[2] for p in parts)
        if size > self.budget:
            raise MXNetStatesError(
                f"the structure expands beyond {self.budget} values (a shared-reference "
                "bomb?)"
            )
        out = (value, 1 + max((p[1] for p in parts), default=0), size)
        self.active.discard(key)
        self.done[key] = out
        return out


def decode(data: bytes) -> tuple[Any, bool]:
    """Decode a pickled MXNet ``.states`` payload without executing any of it.

    Returns plain values — dicts, lists, tuples, scalars, numpy arrays for NDArrays and
    :class:`Record` for optimizer/scheduler objects — and whether it is an MXNet 2.0
    payload (V3 array records, or one of :data:`MXNET2_CLASSES`).

    Raises:
      MXNetStatesError: the payload is malformed, truncated or hostile.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MXNetStatesError("empty file")
    value, n_ops = _run(data)
    finish = _Finisher(budget=4 * n_ops + 64)
    return finish(value)[0], finish.mxnet2


def loads(data: bytes) -> Any:
    """:func:`decode` for MXNet 1.9.1 payloads: an MXNet 2.0 one is refused."""
    value, mxnet2 = decode(data)
    if mxnet2:
        raise MXNetStatesError(
            "an MXNet 2.0 .states payload (V3 arrays or 2.0 classes): only MXNet 2.0 "
            "Trainer files of AdamW, AdaBelief and LANS are read (load_states)"
        )
    return value


def _dump(value: Any, out: list[bytes]) -> None:
    if value is None:
        out.append(b"N")
    elif isinstance(value, np.ndarray):
        from ._save import _record as save_record

        raw = save_record("state", value)
        out.append(b"cmxnet.ndarray.ndarray\nNDArray\nN\x85R}X\x06\x00\x00\x00handle")
        out.append(b"cbuiltins\nbytearray\nB" + struct.pack("<I", len(raw)) + raw)
        out.append(b"\x85Rsb")
    elif isinstance(value, tuple):
        out.append(b"(")
        for v in value:
            _dump(v, out)
        out.append(b"t")
    else:
        raise TypeError(f"cannot write a state of type {type(value).__name__}")


def dumps(states: dict[int, Any]) -> bytes:
    """MXNet's Module ``.states`` payload (``pickle.dumps({index: state})``, protocol 3)
    for states made of ``None``, numpy arrays and tuples; MXNet 1.9.1 loads it."""
    out = [b"\x80\x03}("]
    for index, value in states.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**31:
            raise TypeError(f"state index must be an int in [0, 2**31), got {index!r}")
        out.append(b"J" + struct.pack("<i", index))
        _dump(value, out)
    out.append(b"u.")
    return b"".join(out)
