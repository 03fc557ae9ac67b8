"""The optimizer contract: what a rule, a kernel, a state and an optimizer are."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, TypedDict

import jax
import jax.numpy as jnp

from .._typing import Grads, Params, PyTree, Schedule
from ._mxnet_compat import MXNetMethods, adopt_subclass, dispatch_init
from ._packed import Packed

LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))

class Hyper(NamedTuple):
    """What the base hands a kernel besides the leaf's arrays.

    Attributes:
      lr: the leaf's learning rate, ``schedule(num_update) * lr_mult`` (compute dtype).
      wd: the leaf's weight decay, ``wd * wd_mult`` (compute dtype).
      t: this update's count, int32: ``begin_num_update + k`` on the k-th update.
      index: the leaf's position in tree order (a Python int).
      name: the leaf's MXNet-style name (``fc_weight``; see :mod:`mxjax._names`). A
        kernel that reads neither ``index`` nor ``name`` is traced once for all the leaves
        of a kind (:mod:`~mxjax.optimizer._leaves`), with stand-ins that raise when read;
        so a kernel must not branch on their type or identity (``isinstance(h.index,
        int)``, ``h.name is None``) without reading them.
      num_leaves: the number of leaves (a Python int).
      extra: what the rule's ``prepare`` returned for this step, else ``None``.
      rescale_grad: the optimizer's ``rescale_grad`` (for kernels with ``wd_mode="raw"``).
      clip: the effective clip bound, or ``None`` when MXNet would not clip.
      decay: whether the leaf's weight decay is nonzero (a static bool: kernels may skip
        the ``wd * w`` term, which then only matters for non-finite weights).
    """

    lr: jax.Array
    wd: jax.Array
    t: jax.Array
    index: int
    name: str
    num_leaves: int
    extra: Any
    rescale_grad: float
    clip: float | None
    decay: bool = True

Slots = tuple[jax.Array, ...]

@jax.tree_util.register_pytree_node_class
class PerLeaf:
    """Values in a rule's ``step_extra`` (what ``prepare`` returns for the step) that
    differ by leaf: 1-D arrays, element ``j`` for the leaf of index ``j`` (tree order).

    Under a trace, a layout that updates leaf by leaf hands the kernel of leaf ``j`` the
    tuple of its elements in place of the :class:`PerLeaf`, as scalars in buffers of
    their own (so that leaves of one shape run the same compiled loop whatever their
    index; a leaf that read ``v[j]`` itself would be a program of its own). Elsewhere
    (op by op outside a trace, the multi-tensor layout) the kernel gets the
    :class:`PerLeaf` itself, with ``h.index`` an int or a traced int32. A kernel accepts
    both: :meth:`values` reads either. Only in ``step_extra``; the vectors must be 1-D,
    one element per leaf (checked).
    """

    def __init__(self, *vectors: jax.Array) -> None:
        self.vectors = vectors

    @staticmethod
    def values(x: Any, index: Any) -> tuple[jax.Array, ...]:
        """The leaf's elements from what the kernel got for a :class:`PerLeaf` ``x``:
        the tuple itself, or each vector at ``index`` (``h.index``)."""
        return tuple(v[index] for v in x.vectors) if isinstance(x, PerLeaf) else tuple(x)

    def tree_flatten(self) -> tuple[tuple[jax.Array, ...], None]:
        return self.vectors, None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Any) -> PerLeaf:
        return cls(*children)

Kernel = Callable[[jax.Array, jax.Array, Slots, Hyper], tuple[jax.Array, Slots]]

@dataclasses.dataclass(frozen=True)
class Rule:
    """One optimizer's algorithm and how MXNet's shared preamble applies to it.

    Attributes:
      kernel: ``kernel(w, g, slots, h) -> (new_w, new_slots)`` for one leaf. ``g`` is
        already preprocessed according to ``wd_mode``; ``slots`` is a tuple of arrays.
        Arrays have the leaf's shape.
      slots: names of the per-leaf state arrays; each starts as zeros like the weight
        (in the compute dtype, or float32 when ``state_dtype="float32"``).
      init_slots: a custom ``w -> slots`` initialiser (``w`` in the compute dtype), used
        instead of zeros.
      wd_mode: ``"in_clip"``: ``g = clip(rescale_grad * g + wd * w)`` (Adam, RMSProp, ...);
        ``"kernel"``: ``g = clip(rescale_grad * g)`` and the kernel applies ``h.wd``;
        ``"raw"``: the kernel receives the raw gradient (use :func:`rescale_clip`).
      clip_mode: MXNet's two conventions [Q7]. ``"fused"`` (C++ ops): clip only when
        ``clip_gradient`` is truthy and positive, so 0 or a negative value means no
        clipping. ``"python"`` (NDArray code): clip whenever it is not ``None``, so 0
        zeroes the gradient; a negative bound is refused.
      state_dtype: ``"weight"``: slots in the weight's dtype (float32 under
        multi_precision); ``"float32"``: slots always float32 (AdaGrad, RMSProp, AdaDelta,
        Ftrl). A float16/bfloat16 leaf of such an optimizer is computed in float32 and
        rounded back (MXNet 1.9.1 crashes on this combination).
      wd_suffixes: the name suffixes that keep weight decay under ``wd_by_name=True``.
      init_extra: ``() -> pytree``: optimizer-global state (Nadam's momentum schedule).
      prepare: ``(extra, t, lr, num_leaves) -> (step_extra, new_extra)``, run once per
        step before the kernels; ``step_extra`` reaches every kernel as ``h.extra``
        (values that differ by leaf in a :class:`PerLeaf`).
      count_offset: added to ``num_update`` when calling the schedule (LBSGD: -1) [Q5].
      elementwise: whether the kernel computes each element of a leaf from the same
        element of its inputs alone, the same way on every leaf (no use of the leaf's
        shape, size or rank, of ``h.index`` or ``h.name``, no random draws, no
        reductions). Under ``multi_tensor=True`` only such a kernel may run on several
        leaves at once (concatenated, or in the CPU custom call), and mxjax proves it
        from the kernel's jaxprs at trace time
        (:mod:`~mxjax.optimizer._verify`). ``None`` (the default): find out; a kernel
        that is not runs leaf by leaf on slices of the flat state, with a
        :class:`~mxjax.optimizer.FastPathFallbackWarning` once. ``True``: the same,
        but a kernel that is not is refused (``ValueError`` at trace time). ``False``:
        never; the state keeps the per-leaf layout (unless ``per_leaf_scalars``).
      per_leaf_scalars: the kernel is elementwise but for scalars of the whole leaf
        (sums over every axis of the leaf, as LAMB's norms, or values computed from
        ``h.index``, which it must accept as a traced int32). Under
        ``multi_tensor=True`` its state is flat too: the CPU custom call runs it over
        all leaves at once, other backends leaf by leaf on slices of the flat state.
        Proven at trace time as ``elementwise=True`` is (a kernel reading the leaf's
        shape or ``h.name``, or reducing over part of a leaf, is refused).
    """

    kernel: Kernel
    slots: tuple[str, ...] = ()
    init_slots: Callable[[jax.Array], Slots] | None = None
    wd_mode: Literal["in_clip", "kernel", "raw"] = "in_clip"
    clip_mode: Literal["fused", "python"] = "fused"
    state_dtype: Literal["weight", "float32"] = "weight"
    wd_suffixes: tuple[str, ...] = ("_weight", "_gamma")
    init_extra: Callable[[], PyTree] | None = None
    prepare: Callable[..., tuple[Any, PyTree]] | None = None
    count_offset: int = 0
    elementwise: bool | None = None
    per_leaf_scalars: bool = False

    @property
    def flat_state(self) -> bool:
        """Whether ``multi_tensor=True`` gives the rule flat (grouped) state."""
        return self.elementwise is not False or self.per_leaf_scalars

MASTER = "weight_master_copy"  # the slot name of a multi_precision master copy (MXNet's)

class OptState(NamedTuple):
    """The state of every mxjax optimizer.

    Attributes:
      count: int32 scalar, MXNet's ``num_update`` (``begin_num_update`` before the first
        update).
      slots: per-leaf layout: ``{slot name: tree}``, one tree with the params' structure
        per slot of the rule (``state.slots["mean"]["w"]``), as optax keeps its moments;
        under ``multi_precision`` also ``"weight_master_copy"``, the float32 copies, with
        ``None`` at the leaves that have none (float32 and float64 leaves). Multi-tensor
        layout: a :class:`~mxjax.optimizer.MultiSlots`. Read either, by parameter name,
        with ``opt.slots(state)``.
      extra: optimizer-global state (``None`` for most optimizers).
      skipped: int32 scalar, steps skipped for non-finite gradients (``skip_nonfinite``).
    """

    count: jax.Array
    slots: PyTree
    extra: PyTree
    skipped: jax.Array

class Common(TypedDict, total=False):
    """MXNet's base ``Optimizer`` arguments, accepted by every optimizer factory."""

    lr_scheduler: Schedule | None
    wd: float
    rescale_grad: float
    clip_gradient: float | None
    begin_num_update: int
    multi_precision: bool
    lr_mult: Mapping[str, float] | None
    wd_mult: Mapping[str, float] | None
    wd_by_name: bool
    skip_nonfinite: bool
    multi_tensor: bool | Literal["auto"]

COMMON_DEFAULTS: dict[str, Any] = {
    "lr_scheduler": None,
    "wd": 0.0,
    "rescale_grad": 1.0,
    "clip_gradient": None,
    "begin_num_update": 0,
    "multi_precision": False,
    "lr_mult": None,
    "wd_mult": None,
    "wd_by_name": False,
    "skip_nonfinite": False,
    "multi_tensor": "auto",
}

"""The value each :class:`Common` argument has when it is not given."""

def _no_packing(params: Params) -> Packed:
    raise NotImplementedError(
        "this optimizer was not built by from_rule() and cannot pack parameters"
    )

def _no_slots(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(
        "this optimizer was not built by from_rule(): its state has no per-parameter "
        "slots view"
    )

@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer(MXNetMethods):
    """A pure optimizer: ``state = opt.init(params)``,
    ``new_params, new_state = opt.update(grads, state, params)``.

    ``update`` returns the new parameters (not an increment, as MXNet's ``update``
    writes the weight). Both functions are pure and jit-compatible;
    ``jax.jit(opt.update, donate_argnums=(1, 2))`` updates in place.

    Attributes:
      init: ``params -> state``.
      update: ``(grads, state, params) -> (new_params, new_state)``.
      name: the MXNet registry name (``"custom"`` for user optimizers).
      hyperparams: the arguments the optimizer was created with.
      rule: the :class:`Rule` it was built from, if any.
      pack: ``params -> Packed``: the leaves in flat buffers, one per group of the
        multi-tensor layout (:mod:`mxjax.optimizer._packed`); ``init`` and ``update``
        accept the result in place of ``params`` (and of ``grads``).
      slots: ``state -> {parameter name: {slot name: array}}``: the per-parameter state
        in the parameter's shape, whatever the layout (per-leaf, ``multi_tensor=True``
        or packed); names as :func:`~mxjax.optimizer.leaf_names` gives them, slots as
        ``rule.slots`` names them, plus ``"weight_master_copy"`` under
        ``multi_precision``. Parameters without slots are absent.
      state_from_slots: ``(slots, params, *, count=None, extra=None, skipped=0) ->
        state``: the inverse of ``slots``: the state this optimizer's layout keeps for
        ``params`` (arrays or ``jax.ShapeDtypeStruct``; a ``Packed`` gives the packed
        layout's state), holding ``slots`` (every slot of every parameter, each of
        exactly the shape and dtype ``init`` makes), ``count`` (``num_update``;
        ``begin_num_update`` when ``None``) and ``extra`` (the rule's ``init_extra()``
        when ``None``).
    """

    init: Callable[[Params], PyTree]
    update: Callable[[Grads, PyTree, Params], tuple[Params, PyTree]]
    name: str = "custom"
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rule: Rule | None = None
    pack: Callable[[Params], Packed] = _no_packing
    slots: Callable[[PyTree], dict[str, dict[str, jax.Array]]] = _no_slots
    state_from_slots: Callable[..., PyTree] = _no_slots

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        adopt_subclass(cls)  # MXNet's create_state/update path (_mxnet_compat)

# A subclass defining MXNet's create_state/update is built by MXNet's base constructor.
Optimizer.__init__ = dispatch_init(Optimizer.__init__)  # type: ignore[method-assign]
