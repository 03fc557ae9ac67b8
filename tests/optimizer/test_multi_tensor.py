"""``multi_tensor=True``: leaves share flat state buffers; on CPU one custom call per
chunk of leaves updates them in place (mxjax/_kernels), with the reference's numbers."""

from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer import FastPathFallbackWarning, MultiSlots, _fused
from mxjax.optimizer._multi import plan
from tests.helpers import kernel_loops

NAMES = mx.optimizer.names()
KERNEL = _fused._kernels.available()
"""Whether this install runs the custom call. Without it (``MXJAX_NO_KERNELS=1``, no
compiler at install) every group runs through XLA, the documented fallback: the tests
of the custom call then assert that instead (no program, the XLA path's numbers)."""


def tree() -> dict:
    """float32 leaves (two groups: one has lr_mult), float16 leaves, one big leaf."""
    key = jax.random.key(3)
    shapes = {
        "fc_weight": (3, 4),
        "fc_bias": (4,),
        "conv_weight": (2, 3, 2, 2),
        "scale": (7,),
        "head_weight": (5, 2),
        "big_weight": (70_000,),
        "h_weight": (6,),
        "h_bias": (2, 3),
    }
    return {
        k: (jax.random.normal(jax.random.fold_in(key, i), s) * 0.5).astype(
            jnp.float16 if k.startswith("h_") else jnp.float32
        )
        for i, (k, s) in enumerate(shapes.items())
    }


def grads(params: dict, step: int) -> dict:
    key = jax.random.key(100 + step)
    return {
        k: (jax.random.normal(jax.random.fold_in(key, i), v.shape) * 0.3).astype(
            v.dtype
        )
        for i, (k, v) in enumerate(params.items())
    }


def kwargs(name: str, params: dict) -> dict:
    kw = dict(
        rescale_grad=0.5,
        clip_gradient=0.4,
        multi_precision=True,
        lr_mult={k: 2.0 for k in ("head_weight", "scale") if k in params},
    )
    if name != "groupadagrad":
        kw["wd"] = 0.01
    return kw


def run(name: str, multi_tensor: bool, params: dict, steps: int = 3, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = mx.optimizer.create(
            name, multi_tensor=multi_tensor, **kwargs(name, params), **extra
        )
        state = opt.init(params)
    step = jax.jit(opt.update)
    for k in range(steps):
        params, state = step(grads(params, k), state, params)
    return opt, params, state


def leaves_equal(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def leaves_close(a, b, rtol: float) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(
            np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=1e-7
        )


@pytest.fixture(params=["custom call", "xla"])
def path(request, monkeypatch) -> str:
    """Run each test on the CPU custom call and on the XLA fallback (other backends);
    returns the path that runs ("xla" for both without the kernel)."""
    if request.param == "xla" or not KERNEL:
        monkeypatch.setattr(_fused._kernels, "available", lambda: False)
        return "xla"
    return request.param


def same_as_op_by_op(got, want, path: str) -> None:
    """Bit for bit on the custom call; XLA may contract a multiply-add (1 ulp)."""
    if path == "xla":
        leaves_close(got, want, rtol=2e-5)
    else:
        leaves_equal(got, want)


def check_loops(results: list[bool], compiled: bool) -> None:
    """Every program of the step got a compiled loop (``compiled``) or none; without
    the kernel there is no program at all."""
    if KERNEL:
        assert results and all(results) == compiled
    else:
        assert results == []


@pytest.mark.parametrize("name", NAMES)
def test_same_params_as_per_leaf(name: str, path: str) -> None:
    """Both layouts run the same float32 operations; XLA's per-leaf kernels may contract
    a multiply-add into an FMA where the flat program does not (1-ulp differences that
    three steps can grow a little), hence a tolerance here and exact tests below."""
    params = tree()
    if name == "groupadagrad":  # 2-D weights only
        params = {k: v for k, v in params.items() if v.ndim == 2}
    ref_opt, ref, ref_state = run(name, False, params)
    opt, got, state = run(name, True, params)
    leaves_close(got, ref, rtol=2e-5 if name != "ftml" else 1e-4)
    assert int(state.count) == int(ref_state.count) == 3
    if opt.rule.flat_state:
        assert isinstance(state.slots, MultiSlots)
        # f32 lr_mult 1 (the big leaf too), f32 lr_mult 2, f16 (master copy)
        assert len(state.slots.groups) == (3 if name != "groupadagrad" else 2)
        assert all(s == () for s in jax.tree.leaves(state.slots.leaves, is_leaf=lambda x: x == ()))
    else:  # the flag is ignored: the reference layout
        assert not isinstance(state.slots, MultiSlots)
        leaves_equal(state.slots, ref_state.slots)


ELEMENTWISE = [
    n for n in NAMES
    if mx.optimizer.create(n).rule.flat_state and not mx.optimizer.create(n).rule.per_leaf_scalars
]
# Elementwise but for scalars of the whole leaf: norms (LAMB, LANS), the leaf's index (Nadam)
PER_LEAF = [n for n in NAMES if mx.optimizer.create(n).rule.per_leaf_scalars]
FLAT = ELEMENTWISE + PER_LEAF


def f32_tree() -> dict:
    return {k: v for k, v in tree().items() if v.dtype == jnp.float32}


@pytest.fixture(params=["compiled loop", "interpreter"])
def loop(request, monkeypatch) -> str:
    """Run each test with the programs' compiled loops and with the block interpreter."""
    request.addfinalizer(_fused._kernels.clear_loops)
    with kernel_loops(monkeypatch, request.param == "compiled loop") as results:
        yield request.param if KERNEL else "xla"
    # every program of these tests has one element phase: all compiled, or none
    check_loops(results, request.param == "compiled loop")


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE if n != "ftml"])
def test_custom_call_equals_op_by_op_reference_bitwise(name: str, loop: str) -> None:
    """The custom call rounds every operation to float32 as written, so it equals the
    per-leaf update evaluated one operation at a time (``jax.disable_jit``) bit for bit,
    in the compiled loop as in the interpreter. (The jitted per-leaf step keeps products
    apart too, but XLA computes its ``a / sqrt(b)`` as ``a * rsqrt(b)``: 1 ulp.)

    (FTML is left to the tolerance and MXNet parity tests: one of its operations rounds
    differently op by op than inside the jitted step.)"""
    _, got, got_state = run(name, True, f32_tree())
    same_as_op_by_op(got, op_by_op(name), loop)  # three steps: slots from zero too


@functools.cache
def op_by_op(name: str) -> dict:
    """Three per-leaf steps evaluated one operation at a time (shared by both loops)."""
    params = f32_tree()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = mx.optimizer.create(name, multi_tensor=False, **kwargs(name, params))
    p, s = params, ref.init(params)
    with jax.disable_jit():
        for k in range(3):
            p, s = ref.update(grads(p, k), s, p)
    return p


@pytest.mark.parametrize("name", PER_LEAF)
def test_compiled_loops_equal_the_interpreter_bitwise(name: str, monkeypatch) -> None:
    """LAMB's and LANS's norms are summed by the loops in the interpreter's order: the
    same bits, run to run and loop to interpreter (Nadam: its per-leaf table)."""
    results = {}
    for mode in ("interpreter", "compiled loop"):
        with kernel_loops(monkeypatch, mode == "compiled loop") as compiled:
            results[mode] = run(name, True, f32_tree())[1:]
        check_loops(compiled, mode == "compiled loop")
    _fused._kernels.clear_loops()
    leaves_equal(results["compiled loop"], results["interpreter"])


@pytest.mark.parametrize("name", FLAT)
def test_every_elementwise_optimizer_runs_in_the_custom_call(name: str) -> None:
    """No eligible optimizer falls back to XLA on the CPU, with every preamble option."""
    params = f32_tree()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = mx.optimizer.create(name, multi_tensor=True, **kwargs(name, params))
        state = opt.init(params)
    hlo = jax.jit(opt.update).lower(grads(params, 0), state, params).as_text()
    # params and grads in one call (5 leaves < CHUNK_LEAVES): one call per group
    assert len(state.slots.groups) == 2
    assert hlo.count("@mxjax_elementwise") == (2 if KERNEL else 0)


def test_chunks_of_leaves_share_the_group_buffers() -> None:
    """More leaves than one call takes: the calls chain through the same flat slots."""
    params = {f"p{i:03d}": jnp.full((i % 5 + 1,), 0.1 * i) for i in range(130)}
    g = jax.tree.map(lambda x: jnp.cos(x) * 0.3, params)
    opt = mx.optimizer.create("adam", multi_tensor=True, wd=0.01)
    ref = mx.optimizer.create("adam", wd=0.01, multi_tensor=False)
    step = jax.jit(opt.update)
    hlo = step.lower(g, opt.init(params), params).as_text()
    chunks = -(-130 // _fused.CHUNK_LEAVES)
    assert hlo.count("@mxjax_elementwise") == (chunks if KERNEL else 0) and chunks == 3
    p, s = params, opt.init(params)
    q, r = params, ref.init(params)
    for _ in range(2):
        p, s = step(g, s, p)
        with jax.disable_jit():
            q, r = ref.update(g, r, q)
    path = "custom call" if KERNEL else "xla"
    same_as_op_by_op(p, q, path)
    ((m, v),) = s.slots.groups
    same_as_op_by_op(
        np.asarray(m).ravel(),
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(r.slots["mean"])]),
        path,
    )


def test_state_runs_on_either_path(monkeypatch) -> None:
    """The custom call and the XLA fallback share the state layout."""
    params = f32_tree()
    opt = mx.optimizer.create("rmsprop", multi_tensor=True, centered=True)
    s0 = opt.init(params)
    p1, s1 = jax.jit(opt.update)(grads(params, 0), s0, params)
    monkeypatch.setattr(_fused._kernels, "available", lambda: False)
    p2, s2 = jax.jit(opt.update)(grads(p1, 1), s1, p1)
    ref = mx.optimizer.create("rmsprop", centered=True)
    q, r = jax.jit(ref.update)(grads(params, 0), ref.init(params), params)
    q, r = jax.jit(ref.update)(grads(q, 1), r, q)
    leaves_close(p2, q, rtol=1e-6)


def test_a_rule_the_custom_call_cannot_run_falls_back_to_xla() -> None:
    """A user kernel with a transcendental of the leaf: no program, same numbers."""

    def kernel(w, g, slots, h):
        (m,) = slots
        m = 0.5 * m + jnp.tanh(g)
        return w - h.lr * m, (m,)

    rule = mx.optimizer.Rule(kernel, slots=("m",))
    opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=True)
    ref = mx.optimizer.from_rule(rule, learning_rate=0.1)
    params = f32_tree()
    g = grads(params, 0)
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        hlo = jax.jit(opt.update).lower(g, opt.init(params), params).as_text()
    assert "mxjax_elementwise" not in hlo and "tanh" in hlo
    # the user is told why, where the kernel could have run it
    said = [str(w.message) for w in told if w.category is FastPathFallbackWarning]
    if _fused._kernels.available():
        assert len(said) == 1 and said[0].endswith("cannot run tanh")
    else:  # XLA runs every rule: nothing to tell
        assert said == []
    got, _ = jax.jit(opt.update)(g, opt.init(params), params)
    want, _ = jax.jit(ref.update)(g, ref.init(params), params)
    leaves_close(got, want, rtol=1e-6)


def test_user_rule_runs_in_the_custom_call() -> None:
    """The README's momentum-sign rule compiles to a program (sign, select, integer_pow)."""

    def kernel(w, g, slots, h):
        (m,) = slots
        m = 0.9 * m + g**3 - jnp.where(g > 0, g, 0.0) ** -2
        return w - h.lr * jnp.sign(m), (m,)

    rule = mx.optimizer.Rule(kernel, slots=("m",))
    opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=True)
    ref = mx.optimizer.from_rule(rule, learning_rate=0.1)
    params = f32_tree()
    g = grads(params, 0)
    hlo = jax.jit(opt.update).lower(g, opt.init(params), params).as_text()
    assert ("mxjax_elementwise" in hlo) == KERNEL
    got, s = jax.jit(opt.update)(g, opt.init(params), params)
    with jax.disable_jit():
        want, r = ref.update(g, ref.init(params), params)
    same_as_op_by_op(got, want, "custom call" if KERNEL else "xla")


@pytest.mark.parametrize(
    "code",
    [
        [99, 0],  # truncated
        [5, 0, 0, 0, 0, 5, 1, 0, 1, 0, 0],  # output register out of range
        [3, 0, 0, 0, 0, 2, 1, 0, 1, 0, 0, 0, 0, 0],  # element phase writes an input
        [4, 0, 0, 0, 0, 3, 1, 0, 1, 0, 0, 3, 0, 0, 0],  # scalar phase writes a temporary
        [4, 0, 0, 0, 1, 3, 3, 1, 0, 1, 24, 3, 0, 0, 0],  # a reduction in the last phase
        [3, 0, 0, 0, 0, 0, 1, 0, 1, 77, 2, 0, 0, 0],  # unknown operation
    ],
)
@pytest.mark.skipif(not KERNEL, reason="the kernel library is not loaded: no program runs")
def test_malformed_program_is_an_error_not_a_crash(code: list) -> None:
    bad = _fused.Program(np.asarray(code, np.int32), jnp.zeros((1,)), jnp.zeros((1, 1)))
    with pytest.raises(Exception, match="malformed program"):
        jax.block_until_ready(_fused.run_group(bad, [jnp.ones(3)], [jnp.ones(3)], ()))


def test_eligible_optimizers() -> None:
    eligible = set(FLAT)
    # random, name-dependent, lagged and per-row algorithms keep the per-leaf path
    assert not eligible & {"sgld", "lbsgd", "lars", "groupadagrad"}
    assert {
        "sgd", "adam", "rmsprop", "adagrad", "adadelta", "ftrl", "signum", "ftml",
        "lamb", "lans", "nadam",
    } <= eligible
    assert set(PER_LEAF) == {"lamb", "lans", "nadam"}


def test_int_pow_traced_equals_static_bitwise() -> None:
    """Nadam's per-leaf schedule: the same bits from a static and a traced exponent."""
    from mxjax.optimizer._kernel_math import int_pow

    mu = jnp.float32(0.89641)
    traced = jax.jit(jax.vmap(lambda n: int_pow(mu, n, 3000)))(jnp.arange(3000))
    ns = [0, 1, 2, 3, 7, 64, 255, 1000, 1023, 2047, 2999]
    static = jnp.stack([jax.jit(lambda m, n=n: int_pow(m, n, 3000))(mu) for n in ns])
    np.testing.assert_array_equal(np.asarray(traced[np.asarray(ns)]), np.asarray(static))


@pytest.mark.parametrize("name", PER_LEAF)
def test_per_leaf_scalars_in_the_custom_call_are_deterministic(name: str) -> None:
    """Norms are summed in a fixed order (blocks, then segments in order): the same
    bits on every run, whatever the threads did, and close to XLA's sums."""
    params = {"big_weight": jnp.linspace(-1.0, 1.0, 300_000), **f32_tree()}
    g = jax.tree.map(lambda x: jnp.sin(x * 7.0) * 0.3, params)
    opt = mx.optimizer.create(name, multi_tensor=True, wd=0.01)
    step = jax.jit(opt.update)
    runs = [step(g, opt.init(params), params)[0] for _ in range(3)]
    for r in runs[1:]:
        leaves_equal(r, runs[0])
    ref = mx.optimizer.create(name, wd=0.01)
    want, _ = jax.jit(ref.update)(g, ref.init(params), params)
    leaves_close(runs[0], want, rtol=1e-5)


def test_skip_nonfinite_leaves_everything_untouched() -> None:
    params = tree()
    opt = mx.optimizer.create(
        "adam", multi_tensor=True, skip_nonfinite=True, multi_precision=True
    )
    state = opt.init(params)
    g = grads(params, 0)
    g["fc_bias"] = g["fc_bias"].at[1].set(jnp.nan)
    new_params, new_state = jax.jit(opt.update)(g, state, params)
    leaves_equal(new_params, params)
    zero = jnp.zeros((), jnp.int32)
    leaves_equal(new_state._replace(skipped=zero), state._replace(skipped=zero))
    assert int(new_state.skipped) == 1


def small_tree(n: int = 40) -> dict:
    return {
        f"layer{i}": jnp.full((3 + i % 4, 5), 0.1 * i, jnp.float32) for i in range(n)
    }


ARRAY_COPY = re.compile(r"= \w+\[\d[\d,]*\]\{[\d,]*\} copy\(")


XLA_COPY_FREE = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "signum")


@pytest.mark.parametrize("name", FLAT)
def test_naive_donated_jit_copies_no_array(name: str, path: str) -> None:
    """``jax.jit(opt.update, donate_argnums=(1, 2))``: flat slots never share a
    parameter's shape, so JAX pairs every donated buffer with its own successor, and the
    custom call updates every buffer in place: no array copy, no temporary buffer.

    (On the XLA fallback only the optimizers in ``XLA_COPY_FREE`` are copy-free: the
    others' fused kernels read a slot's old value after writing its new one.)"""
    params = small_tree()
    kw = {"momentum": 0.9} if name in ("sgd", "ccsgd", "nag") else {}
    opt = mx.optimizer.create(name, multi_tensor=True, **kw)
    state = opt.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    compiled = jax.jit(opt.update, donate_argnums=(1, 2)).lower(g, state, params).compile()
    copies = ARRAY_COPY.findall(compiled.as_text())
    if path == "custom call" or name in XLA_COPY_FREE:
        assert not copies
    if path == "custom call":  # the step's scalars only
        live = sum(x.nbytes for x in jax.tree.leaves((params, g, state)))
        assert compiled.memory_analysis().temp_size_in_bytes <= 1024 + 0.01 * live
    if name in XLA_COPY_FREE:
        ref = mx.optimizer.create(name, multi_tensor=False, **kw)
        hlo_ref = jax.jit(ref.update, donate_argnums=(1, 2)).lower(
            g, ref.init(params), params
        )
        assert ARRAY_COPY.findall(hlo_ref.compile().as_text())  # what flat slots avoid


def test_slot_shape_never_equals_a_parameter_shape() -> None:
    params = {
        "a": jnp.ones((2,)),
        "b": jnp.ones((4,)),
        "c": jnp.ones((1, 6), jnp.bfloat16),
    }
    opt = mx.optimizer.create("adam", multi_tensor=True, multi_precision=True)
    state = opt.init(params)
    (m, v), (m16, v16, master) = state.slots.groups  # a and b; c in its own dtype
    assert m.shape == v.shape == (1, 1, 6)  # (1, 6) is c's shape
    assert m16.shape == master.shape == (1, 1, 6) and master.dtype == jnp.float32
    g = jax.tree.map(lambda x: x * 0.5, params)
    new, _ = jax.jit(opt.update)(g, state, params)
    ref = mx.optimizer.create("adam", multi_precision=True)
    want, _ = jax.jit(ref.update)(g, ref.init(params), params)
    leaves_equal(new, want)


def test_plan_groups_by_dtype_and_multipliers() -> None:
    opt = mx.optimizer.create(
        "sgd", multi_tensor=True, lr_mult={"b": 0.5}, momentum=0.9
    )
    params = {
        "a": jnp.zeros((3,)),
        "b": jnp.zeros((3,)),
        "c": jnp.zeros((2, 2)),
        "d": jnp.zeros((5,), jnp.bfloat16),
        "e": jnp.zeros((5,), jnp.bfloat16),
        "f": jnp.zeros((70_000,)),
        "g": jnp.zeros((0,)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        state = opt.init(params)
    # a, c, f (any size); b alone (its own lr_mult); d, e (bfloat16)
    assert [tuple(x.shape) for (x,) in state.slots.groups] == [(1, 70_007), (1, 3), (1, 10)]
    # only the empty leaf keeps its own (empty) slot
    ungrouped = state.slots.leaves.slots
    assert len(ungrouped) == 1 and ungrouped[0][0].shape == (0,)  # g's
    assert plan  # the planner is importable for tools


def test_state_from_the_other_layout_is_refused() -> None:
    params = small_tree(6)
    g = jax.tree.map(jnp.ones_like, params)
    flat = mx.optimizer.create("adam", multi_tensor=True)
    ref = mx.optimizer.create("adam")
    with pytest.raises(ValueError, match="multi-tensor layout"):
        flat.update(g, ref.init(params), params)
    with pytest.raises(ValueError, match="multi-tensor state"):
        ref.update(g, flat.init(params), params)
    other = dict(params, layer0=jnp.zeros((9, 9)))
    with pytest.raises(ValueError, match=r"other parameters: their shapes differ at leaf 0"):
        flat.update(jax.tree.map(jnp.ones_like, other), flat.init(params), other)
    with pytest.raises(ValueError, match="multi-tensor layout"):
        flat.update(
            g,
            mx.optimizer.create("sgd", multi_tensor=True, momentum=0.9).init(params),
            params,
        )


def test_multi_tensor_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="multi_tensor"):
        mx.optimizer.create("adam", multi_tensor="yes")


@pytest.mark.parametrize("name", ["sgd", "adam", "lamb", "nadam"])
def test_a_multi_tensor_step_is_differentiable(name: str) -> None:
    """Meta-gradients through the step: the custom call's JVP is the XLA path's."""
    kw = {"momentum": 0.9} if name == "sgd" else {}
    params = {k: v for k, v in f32_tree().items() if k != "big_weight"}
    g0 = jax.tree.map(jnp.cos, params)

    def loss(opt, scale):
        state = opt.update(g0, opt.init(params), params)[1]
        g = jax.tree.map(lambda x: jnp.sin(x) * scale, params)
        return sum((x**2).sum() for x in jax.tree.leaves(opt.update(g, state, params)[0]))

    opt = mx.optimizer.create(name, multi_tensor=True, learning_rate=0.1, **kw)
    ref = mx.optimizer.create(name, learning_rate=0.1, **kw)
    got = jax.jit(jax.grad(lambda s: loss(opt, s)))(0.5)
    want = jax.jit(jax.grad(lambda s: loss(ref, s)))(0.5)
    assert np.isfinite(float(got)) and float(got) != 0.0
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)


@pytest.mark.parametrize(
    "name,kw,concatenates",
    [
        ("adam", {}, False),  # zeros: built from the group's shape alone
        ("adam", {"multi_precision": True}, True),  # float16 leaves' master copies
        ("dcasgd", {}, True),  # the previous weight starts as the weight
    ],
)
def test_init_concatenates_only_values_it_keeps(name: str, kw: dict, concatenates) -> None:
    """Concatenating 2,000 leaves costs XLA seconds to compile: init skips it when the
    initial slots are zeros, with the same state."""
    params = small_tree()
    if kw.get("multi_precision"):
        params |= {f"h{i}": jnp.full((3, i + 1), 0.5, jnp.float16) for i in range(2)}
    opt = mx.optimizer.create(name, multi_tensor=True, **kw)
    jaxpr = str(jax.make_jaxpr(opt.init)(params))
    assert ("concatenate" in jaxpr) == concatenates
    ref = mx.optimizer.create(name, **kw)
    g = jax.tree.map(lambda x: jnp.cos(x).astype(x.dtype), params)
    got = jax.jit(opt.update)(g, opt.init(params), params)[0]  # reads the initial slots
    want = jax.jit(ref.update)(g, ref.init(params), params)[0]
    leaves_close(got, want, rtol=1e-6)
