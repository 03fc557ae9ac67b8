"""``multi_tensor=True`` never runs a rule wrong (issue 15, item 1): a group reaches the
custom call or the concatenated XLA path only when its rule is proven the same program
on every leaf (mxjax/optimizer/_verify.py); anything else runs leaf by leaf, with a
``FastPathFallbackWarning`` once per rule, or is refused when the rule claimed otherwise.
Every case runs on the custom call's path and on the XLA path (other backends,
``MXJAX_NO_KERNELS=1``)."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.optimizer import FastPathFallbackWarning, Rule, _fused, _verify
from mxjax.optimizer._layout import slots_view

KERNEL = _fused._kernels.available()


@pytest.fixture(params=["kernel", "xla"])
def path(request, monkeypatch) -> str:
    """``"kernel"``: the CPU custom call where this install has it (without it, the
    documented fallback: XLA, and nothing said about primitives); ``"xla"``: XLA."""
    if request.param == "xla":
        monkeypatch.setattr(_fused._kernels, "available", lambda: False)
    return request.param


def kernel_runs(path: str) -> bool:
    return path == "kernel" and KERNEL


def tree(min_rank: int = 1) -> dict:
    """Leaves of several shapes and ranks in one group (float32, no multipliers)."""
    shapes = {
        "fc_weight": (3, 4),
        "fc_bias": (4,),
        "conv_weight": (2, 3, 2),
        "scale": (5,),
        "w4": (2, 1, 2, 3),
    }
    return {
        k: jnp.sin(jnp.arange(np.prod(s), dtype=jnp.float32) * 0.7 + i).reshape(s)
        for i, (k, s) in enumerate(shapes.items())
        if len(s) >= min_rank
    }


def grads(params: dict) -> dict:
    return jax.tree.map(lambda x: jnp.cos(3.0 * x + 0.5) * 0.4, params)


def steps(rule: Rule, multi_tensor: bool, params: dict, n: int = 2, **kw):
    opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=multi_tensor, **kw)
    step = jax.jit(opt.update)
    state = opt.init(params)
    for _ in range(n):
        params, state = step(grads(params), state, params)
    return params, state


def per_leaf_slots(state) -> list[np.ndarray]:
    """The slots by parameter and slot name (either layout: ``slots_view``)."""
    view = slots_view(state.slots)
    return [np.ravel(view[p][k]) for p in sorted(view) for k in sorted(view[p])]


def assert_same(a, b) -> None:
    """The same numbers up to float32 rounding: two XLA programs (the step on slices of
    the flat state, the per-leaf step) may contract a multiply-add into an FMA
    differently (1 ulp). A rule run as one leaf gives errors of 1e-2 to 1."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.shape(x) == np.shape(y) and x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=3e-7, atol=1e-7)


# Rules a user writes by the README, each right leaf by leaf and wrong (or a crash) if a
# group ran it as one leaf: kernel, the reason the verification gives, minimum rank.
def k_mean(w, g, s, h):
    (m,) = s
    m = 0.9 * m + (g - jnp.mean(g))
    return w - h.lr * m, (m,)


def k_size(w, g, s, h):
    (m,) = s
    m = 0.9 * m + g / w.size
    return w - h.lr * m, (m,)


def k_decay_matrices(w, g, s, h):  # "decay only if w.ndim >= 2"
    (m,) = s
    m = 0.9 * m + (g + 0.1 * w if w.ndim >= 2 else g)
    return w - h.lr * m, (m,)


def k_sum_axis0(w, g, s, h):
    (m,) = s
    m = 0.9 * m + (g - g.sum(axis=0, keepdims=True))
    return w - h.lr * m, (m,)


def k_sum_axis1(w, g, s, h):
    (m,) = s
    m = 0.9 * m + (g - g.sum(axis=1, keepdims=True))
    return w - h.lr * m, (m,)


def k_norm(w, g, s, h):
    (m,) = s
    m = 0.9 * m + g / (jnp.linalg.norm(g) + 1e-3)
    return w - h.lr * m, (m,)


def k_bias_by_name(w, g, s, h):
    (m,) = s
    m = 0.9 * m + (g if h.name.endswith("bias") else g + 0.1 * w)
    return w - h.lr * m, (m,)


def k_name_regex(w, g, s, h):
    (m,) = s
    m = 0.9 * m + (g if re.search("weight", h.name) else 2.0 * g)
    return w - h.lr * m, (m,)


def k_last_dim(w, g, s, h):  # JAX answers a symbolic d1 == 4 with False, unproven
    (m,) = s
    m = 0.9 * m + (2.0 * g if w.shape[-1] == 4 else g)
    return w - h.lr * m, (m,)


def k_index(w, g, s, h):
    (m,) = s
    m = 0.9 * m + g * jnp.asarray(h.index + 1, jnp.float32)
    return w - h.lr * m, (m,)


def k_sort(w, g, s, h):
    (m,) = s
    m = 0.9 * m + jnp.sort(g.ravel()).reshape(g.shape)
    return w - h.lr * m, (m,)


def k_position(w, g, s, h):
    (m,) = s
    m = 0.9 * m + g * jnp.arange(g.size, dtype=jnp.float32).reshape(g.shape)
    return w - h.lr * m, (m,)


def k_max(w, g, s, h):
    (m,) = s
    m = 0.9 * m + g / (jnp.max(jnp.abs(g)) + 1.0)
    return w - h.lr * m, (m,)


REFUSED = {
    "mean": (k_mean, r"uses the leaf's shape or size as a value", 1),
    "size": (k_size, r"uses the leaf's shape or size as a value", 1),
    "decay_matrices": (k_decay_matrices, r"depends on the leaf's rank", 1),
    "sum_axis0": (k_sum_axis0, r"reduces over part of the leaf \(reduce_sum over axes \(0,\)", 1),
    "sum_axis1": (k_sum_axis1, r"raised ValueError: axis 1 is out of bounds", 2),
    "norm": (k_norm, r"reduces over the whole leaf \(reduce_sum\).*per_leaf_scalars=True", 1),
    "bias_by_name": (k_bias_by_name, r"reads h\.name", 1),
    "name_regex": (k_name_regex, r"reads h\.name", 1),
    "last_dim": (k_last_dim, r"compares the leaf's shape or size \(d\d == 4\)", 1),
    "index": (k_index, r"uses h\.index.*per_leaf_scalars=True", 1),
    "sort": (k_sort, r"applies sort to the leaf", 1),
    "position": (k_position, r"(iota|shape or size)", 1),
    "max": (k_max, r"reduces over the whole leaf \(reduce_max\)", 1),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_rule_that_is_not_one_program_runs_leaf_by_leaf(name: str, path: str) -> None:
    """The per-leaf numbers (weights and slots), and the user is told why."""
    kernel, reason, min_rank = REFUSED[name]
    params = tree(min_rank)
    rule = Rule(kernel, slots=("m",))
    with pytest.warns(FastPathFallbackWarning, match="runs leaf by leaf.*" + reason):
        got, got_state = steps(rule, True, params)
    want, want_state = steps(rule, False, params)
    assert_same(got, want)
    assert_same(per_leaf_slots(got_state), per_leaf_slots(want_state))


@pytest.mark.parametrize("name", REFUSED)
def test_a_rule_declared_elementwise_that_is_not_is_refused(name: str) -> None:
    kernel, reason, min_rank = REFUSED[name]
    params = tree(min_rank)
    opt = mx.optimizer.from_rule(
        Rule(kernel, slots=("m",), elementwise=True), multi_tensor=True
    )
    with pytest.raises(ValueError, match="declares elementwise=True, but .*" + reason):
        jax.jit(opt.update).lower(grads(params), opt.init(params), params)


def test_a_rule_declared_per_leaf_scalars_that_reads_the_shape_is_refused() -> None:
    def kernel(w, g, s, h):
        return w - h.lr * g / jnp.sqrt(jnp.sum(g * g) / g.size + 1.0), s

    params = tree()
    opt = mx.optimizer.from_rule(
        Rule(kernel, elementwise=False, per_leaf_scalars=True), multi_tensor=True
    )
    with pytest.raises(ValueError, match="declares per_leaf_scalars=True, but it uses"):
        jax.jit(opt.update).lower(grads(params), opt.init(params), params)


def test_a_norm_rule_declared_per_leaf_scalars_runs_in_the_custom_call(path: str) -> None:
    rule = Rule(k_norm, slots=("m",), elementwise=False, per_leaf_scalars=True)
    params = tree()
    opt = mx.optimizer.from_rule(rule, learning_rate=0.1, multi_tensor=True)
    hlo = jax.jit(opt.update).lower(grads(params), opt.init(params), params).as_text()
    assert ("mxjax_elementwise" in hlo) == kernel_runs(path)
    got, _ = steps(rule, True, params)
    want, _ = steps(rule, False, params)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-6, atol=1e-7)


# Elementwise rules with primitives the custom call does not implement: XLA runs them on
# the concatenation, and the primitive is named where the custom call could have run.
UNTRANSLATABLE = {
    "erf": (lambda g: jax.lax.erf(g), "erf"),
    "tanh": (jnp.tanh, "tanh"),
    "rsqrt": (lambda g: g * jax.lax.rsqrt(jnp.abs(g) + 1.0), "rsqrt"),
    "pow_2.5": (lambda g: jnp.abs(g) ** 2.5, "pow"),
    "int_cast": (lambda g: (g * 10).astype(jnp.int32).astype(jnp.float32), "int32"),
}


@pytest.mark.parametrize("name", UNTRANSLATABLE)
def test_an_untranslatable_primitive_runs_through_xla_and_is_named(name, path) -> None:
    fn, primitive = UNTRANSLATABLE[name]

    def kernel(w, g, s, h):
        (m,) = s
        m = 0.9 * m + fn(g)
        return w - h.lr * m, (m,)

    rule = Rule(kernel, slots=("m",))
    params = tree()
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        got, _ = steps(rule, True, params)
    said = [str(w.message) for w in told]
    if kernel_runs(path):
        assert len(said) == 1 and "runs through XLA" in said[0] and primitive in said[0]
        assert told[0].category is FastPathFallbackWarning
    else:
        assert said == []
    want, _ = steps(rule, False, params)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_told_once_per_rule() -> None:
    params = tree()
    rule = Rule(k_bias_by_name, slots=("m",))
    with pytest.warns(FastPathFallbackWarning) as told:
        steps(rule, True, params)
        steps(rule, True, params)  # another optimizer, another trace, the same rule
    assert len(told) == 1
    with pytest.warns(FastPathFallbackWarning):
        steps(Rule(k_bias_by_name, slots=("m",)), True, params)  # another rule


def test_a_scalar_leaf_joins_the_group_and_a_rank_test_is_seen(path: str) -> None:
    """Rank 0 is traced as it is: the README's rule runs in the group, and a rule
    asking ``w.ndim == 0`` runs leaf by leaf."""

    def msign(w, g, s, h):
        (m,) = s
        m = 0.9 * m + g
        return w - h.lr * jnp.sign(m), (m,)

    def scalar_special(w, g, s, h):
        (m,) = s
        m = 0.9 * m + (0.5 * g if w.ndim == 0 else g)
        return w - h.lr * m, (m,)

    params = {**tree(), "temperature": jnp.float32(0.3)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, _ = steps(Rule(msign, slots=("m",)), True, params)
    assert_same(got, steps(Rule(msign, slots=("m",)), False, params)[0])
    rule = Rule(scalar_special, slots=("m",))
    with pytest.warns(FastPathFallbackWarning, match="0-D leaf"):
        got, _ = steps(rule, True, params)
    assert_same(got, steps(rule, False, params)[0])


FLAT = [n for n in mx.optimizer.names() if mx.optimizer.create(n).rule.flat_state]


@pytest.mark.parametrize("name", FLAT)
def test_every_builtin_rule_is_proven_for_the_custom_call(name: str, monkeypatch) -> None:
    """Every built-in optimizer with flat state is accepted on a group of ranks 0 to
    4, with every preamble option, and translated for the custom call (the program is
    built even where this install has no kernel to run it)."""
    params = {**tree(), "temperature": jnp.float32(0.3)}
    choices, programs = [], []
    choose, compile_group = _verify.Paths.choose, _verify.compile_group
    monkeypatch.setattr(
        _verify.Paths, "choose",
        lambda self, *a: choices.append(choose(self, *a)) or choices[-1],
    )
    monkeypatch.setattr(
        _verify, "compile_group",
        lambda *a: programs.append(compile_group(*a)) or programs[-1],
    )
    monkeypatch.setattr(_fused._kernels, "available", lambda: True)  # translate,
    monkeypatch.setattr(_fused._kernels, "compile_loop", lambda code: False)  # only
    opt = mx.optimizer.create(
        name, multi_tensor=True, wd=0.01, rescale_grad=0.5, clip_gradient=0.4,
        lr_mult={"scale": 2.0},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.make_jaxpr(opt.update)(grads(params), opt.init(params), params)
    per_leaf_scalars = opt.rule.per_leaf_scalars
    assert len(choices) == len(programs) == 2  # lr_mult 1 and 2
    assert all(c.jaxpr is not None for c in choices)
    assert {c.xla for c in choices} == {"slices" if per_leaf_scalars else "concat"}


def test_verification_is_cached_per_group_signature(monkeypatch) -> None:
    """Two traces per group signature (ranks 1 and 2 here), then none: a step traced
    again costs no verification."""
    traced = []
    trace = _verify._trace
    monkeypatch.setattr(
        _verify, "_trace", lambda *a: traced.append(a[4]) or trace(*a)
    )
    params = {k: v for k, v in tree().items() if v.ndim <= 2}
    opt = mx.optimizer.create("adam", multi_tensor=True)
    state = opt.init(params)
    jax.jit(opt.update).lower(grads(params), state, params)
    assert sorted(traced) == [1, 2]
    jax.jit(lambda g, s, p: opt.update(g, s, p)).lower(grads(params), state, params)
    assert sorted(traced) == [1, 2]
