"""The per-leaf path's compiled program does not grow with the number of leaves.

XLA on the CPU compiles each distinct fused loop once (~10 ms each), so compile time
grows with the *distinct* loops: a per-leaf value baked into a leaf's loop (a slice of a
vector at the leaf's index, a power with the leaf's exponent), or a shared operand
numbered differently in one leaf's loop, makes it grow with the tensor count (issue 16).
:mod:`mxjax.optimizer._leaves` traces one program per kind of leaf; Nadam's momentum
schedule, which differs per leaf, reaches each leaf as scalars of its own
(:class:`~mxjax.optimizer.PerLeaf`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer._kernel_math import scaled_powers
from mxjax.optimizer._leaves import unstack


def loops(n_leaves: int, name: str, **kw) -> tuple[int, int, int]:
    """Of ``name``'s jitted per-leaf step on ``n_leaves`` leaves of one shape (16,):
    (distinct fused computations, up to instruction names; those computing a leaf-shaped
    result; how many of those there are)."""
    params = {f"w{i:03d}_weight": jnp.full((16,), 0.1 * (i + 1)) for i in range(n_leaves)}
    opt = mx.optimizer.create(name, multi_tensor=False, **kw)
    step = mx.optimizer.jit_update(opt)
    text = step.lower(params, opt.init(params), params).compile().as_text()
    kinds, leaf_kinds, leaf_loops = set(), set(), 0
    for comp in re.split(r"\n(?=%)", text):
        if not comp.startswith("%fused"):
            continue
        body = re.sub(r", metadata=\{[^}]*\}", "", comp.split("\n", 1)[1])
        names: dict[str, str] = {}
        rename = lambda m: names.setdefault(m[0], f"%{len(names)}")  # noqa: E731
        kind = re.sub(r"%[\w.\-]+", rename, body)
        kinds.add(kind)
        if re.search(r"ROOT \S+ = f32\[16\]", body):
            leaf_kinds.add(kind)
            leaf_loops += 1
    return len(kinds), len(leaf_kinds), leaf_loops


CASES = [
    ("sgd", {"momentum": 0.9, "wd": 1e-4}),
    ("adam", {}),
    ("rmsprop", {"centered": True}),
    ("adagrad", {}),
    ("lamb", {}),
    ("nadam", {}),
    ("adabelief", {"wd": 1e-3}),
    ("ftml", {}),
]


@pytest.mark.parametrize("name, kw", CASES)
def test_leaves_of_one_shape_share_their_loops(name: str, kw: dict) -> None:
    assert loops(40, name, **kw)[0] == loops(3, name, **kw)[0]


@pytest.mark.parametrize(
    "name, kw", [("sgd", {"momentum": 0.9}), ("adam", {}), ("adagrad", {}), ("rmsprop", {})]
)
def test_every_leaf_of_a_shape_has_the_same_loops(name: str, kw: dict) -> None:
    # not only their number: the first leaf's loops are the others' too (the rounding
    # guard's -0.0 on the right of its sum was numbered in another order in the first
    # leaf's loops). Not yet true of every rule: a guarded product of scalars shared by
    # the leaves (SGD's lr * wd) still gives the first leaf of a shape a loop of its own.
    _, distinct, total = loops(5, name, **kw)
    assert distinct * 5 == total


def _kernel_traces(params: dict, read: str) -> tuple[int, dict]:
    """How often a custom rule's kernel is traced for one jitted step on ``params``,
    and the step's result. ``read``: what of its leaf the kernel reads."""
    calls = []

    def kernel(w, g, slots, h):
        calls.append(1)
        scale = {
            "nothing": lambda: 1.0,
            "name": lambda: float(len(h.name)),
            "index": lambda: jnp.asarray(h.index + 1, w.dtype),
        }[read]()
        return w - h.lr * scale * g, slots

    opt = mx.optimizer.from_rule(
        mx.optimizer.Rule(kernel, elementwise=False), learning_rate=0.5, multi_tensor=False
    )
    out, _ = jax.jit(opt.update)(params, opt.init(params), params)
    return len(calls), out


def test_a_kernel_is_traced_once_per_kind_of_leaf() -> None:
    params = {f"a{i:02d}": jnp.ones((4,)) for i in range(30)}
    params |= {f"b{i:02d}": jnp.ones((2, 3)) for i in range(30)}
    traces, _ = _kernel_traces(params, "nothing")
    assert traces == 2


@pytest.mark.parametrize("read", ["name", "index"])
def test_a_kernel_reading_its_leaf_still_sees_each_leaf(read: str) -> None:
    params = {"a": jnp.ones((3,)), "bb": jnp.ones((3,)), "ccc": jnp.ones((3,))}
    traces, out = _kernel_traces(params, read)
    assert traces > 3  # the shared trace was refused, then one trace per leaf
    want = {"name": [1.0, 2.0, 3.0], "index": [1.0, 2.0, 3.0]}[read]
    for (k, w), scale in zip(sorted(out.items()), want, strict=True):
        want_w = np.full(3, 1.0 - 0.5 * scale, np.float32)
        np.testing.assert_array_equal(np.asarray(w), want_w)


@pytest.mark.parametrize("beta", [0.9, 0.5, 0.999, 0.0])
def test_scaled_powers_have_the_bits_of_static_powers_under_jit(beta: float) -> None:
    ks = [1, 2, 3, 7, 64, 159, 255, 256, 1000, 2047, 2100]

    @jax.jit
    def static(s):  # as the per-leaf kernels computed the schedule before
        return jnp.stack([(jnp.float32(beta) * s) ** k for k in ks])

    table = jax.jit(lambda s: scaled_powers(beta, s, max(ks)))
    for s in [0.5, 0.5017, 0.9731, 0.99999]:
        want = np.asarray(static(jnp.float32(s)))
        got = np.asarray(table(jnp.float32(s)))[np.asarray(ks) - 1]
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_unstack_keeps_every_bit() -> None:
    v = np.linspace(-3.0, 3.0, 130).astype(np.float32)
    v[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40]
    out = jax.jit(lambda x: jnp.stack(unstack(x)))(jnp.asarray(v))
    assert all(s.shape == () for s in jax.eval_shape(unstack, jnp.asarray(v)))
    np.testing.assert_array_equal(np.asarray(out).view(np.int32), v.view(np.int32))


def test_a_refused_kind_leaves_no_calls_behind() -> None:
    # the first kind traces without its name, the second reads it: the step must run
    # each leaf's kernel once (a debug callback counts the runs), not the first kind's
    # shared calls as well as its leaf-by-leaf ones
    runs = []

    def kernel(w, g, slots, h):
        jax.debug.callback(lambda: runs.append(1))
        scale = float(len(h.name)) if w.shape == (2,) else 1.0
        return w - h.lr * scale * g, slots

    params = {"a": jnp.ones((4,)), "b": jnp.ones((4,)), "cc": jnp.ones((2,))}
    opt = mx.optimizer.from_rule(
        mx.optimizer.Rule(kernel, elementwise=False), learning_rate=0.1, multi_tensor=False
    )
    out, _ = jax.jit(opt.update)(params, opt.init(params), params)
    jax.block_until_ready(out)
    jax.effects_barrier()
    assert len(runs) == 3
    want_cc = np.full(2, 1.0 - 0.1 * 2.0)
    np.testing.assert_allclose(np.asarray(out["cc"]), want_cc, rtol=1e-6)


def test_the_programs_outlive_a_step() -> None:
    # eager jax.grad of an update traces (and compiles) a kind's program once, not at
    # every call
    traces = []

    def kernel(w, g, slots, h):
        traces.append(1)
        return w - h.lr * g * g, slots

    opt = mx.optimizer.from_rule(
        mx.optimizer.Rule(kernel, elementwise=False), learning_rate=0.1, multi_tensor=False
    )
    params = {"a": jnp.ones((3,)), "b": jnp.ones((3,))}
    state = opt.init(params)
    loss = lambda g: jnp.sum(opt.update(g, state, params)[0]["a"])  # noqa: E731
    grads = [jax.grad(loss)(params) for _ in range(3)]
    assert len(traces) == 1
    for g in grads:
        np.testing.assert_allclose(np.asarray(g["a"]), np.full(3, -0.2), rtol=1e-6)


def _per_leaf_rule(vector) -> mx.optimizer.Optimizer:
    def prepare(extra, t, lr, num_leaves):
        return mx.optimizer.PerLeaf(vector(num_leaves)), extra

    def kernel(w, g, slots, h):
        (scale,) = mx.optimizer.PerLeaf.values(h.extra, h.index)
        return w - h.lr * scale * g, slots

    return mx.optimizer.from_rule(
        mx.optimizer.Rule(
            kernel, elementwise=False, prepare=prepare, init_extra=lambda: jnp.zeros(())
        ),
        learning_rate=0.5,
        multi_tensor=False,
    )


def test_per_leaf_values_reach_their_leaf_under_jit_and_op_by_op() -> None:
    opt = _per_leaf_rule(lambda n: jnp.arange(1.0, n + 1.0))
    params = {f"w{i}": jnp.ones((2,)) for i in range(5)}
    state = opt.init(params)
    for update in (opt.update, jax.jit(opt.update)):
        out, _ = update(params, state, params)
        for i in range(5):
            np.testing.assert_array_equal(
                np.asarray(out[f"w{i}"]), np.full(2, 1.0 - 0.5 * (i + 1), np.float32)
            )


def test_per_leaf_values_must_have_one_element_per_leaf() -> None:
    opt = _per_leaf_rule(lambda n: jnp.ones((n + 1,)))
    params = {f"w{i}": jnp.ones((2,)) for i in range(3)}
    msg = r"one element per leaf \(3\); got one of shape \(4,\)"
    with pytest.raises(ValueError, match=msg):
        jax.jit(opt.update)(params, opt.init(params), params)
