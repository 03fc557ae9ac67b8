"""Properties of mxjax.initializer that need no MXNet recording."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax.initializer as I

KEY = jax.random.key(0)

RANDOM = [
    ("uniform", lambda: I.Uniform(0.5), (4, 6)),
    ("normal", lambda: I.Normal(0.2), (4, 6)),
    ("xavier", lambda: I.Xavier(), (4, 6)),
    ("xavier_gaussian", lambda: I.Xavier("gaussian", "in", 2.0), (4, 6)),
    ("msraprelu", lambda: I.MSRAPrelu(), (4, 6)),
    ("orthogonal", lambda: I.Orthogonal(), (4, 6)),
    ("orthogonal_normal", lambda: I.Orthogonal(1.0, "normal"), (6, 2, 2)),
]
ALL = RANDOM + [
    ("zero", I.Zero, (3, 2)),
    ("one", I.One, (3, 2)),
    ("constant", lambda: I.Constant(2.5), (3, 2)),
    ("bilinear", I.Bilinear, (2, 2, 4, 4)),
    ("lstmbias", I.LSTMBias, (8,)),
    ("fusedrnn", lambda: I.FusedRNN(I.Uniform(), 2, 1, "gru"), (3 * 2 * (3 + 2 + 2),)),
]


@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name
)
@pytest.mark.parametrize("name,build,shape", ALL, ids=[a[0] for a in ALL])
def test_initializer_keeps_shape_and_dtype(name, build, shape, dtype):
    out = build()(KEY, shape, dtype)
    assert out.shape == shape
    assert out.dtype == jnp.dtype(dtype)


JITTED = [
    a
    for a in ALL
    if a[0] in ("uniform", "xavier_gaussian", "orthogonal", "fusedrnn", "bilinear")
]


@pytest.mark.parametrize("name,build,shape", JITTED, ids=[a[0] for a in JITTED])
def test_initializer_default_dtype_is_float32_and_jits(name, build, shape):
    init = build()
    out = jax.jit(init, static_argnums=(1, 2))(KEY, shape, jnp.float32)
    np.testing.assert_allclose(
        out, init(KEY, shape), rtol=1e-6, atol=1e-7
    )  # XLA may fuse
    assert init(KEY, shape).dtype == jnp.float32


@pytest.mark.parametrize("name,build,shape", RANDOM, ids=[r[0] for r in RANDOM])
def test_random_initializer_same_key_same_array_other_key_other_array(
    name, build, shape
):
    init = build()
    np.testing.assert_array_equal(init(KEY, shape), init(KEY, shape))
    assert not np.array_equal(init(KEY, shape), init(jax.random.key(1), shape))


def test_raw_uint32_key_is_accepted():
    out = I.Uniform()(jax.random.PRNGKey(0), (3,))
    assert out.shape == (3,)


@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name
)
def test_uniform_is_symmetric_and_bounded(dtype):
    x = np.asarray(I.Uniform(0.5)(KEY, (20000,), dtype), np.float32)
    assert x.min() >= -0.5 and x.max() <= 0.5
    assert x.min() < -0.49 and x.max() > 0.49  # [-scale, scale], not jax's [0, scale)


def test_xavier_uniform_bound_is_mxnet_formula_for_4d():
    # MXNet: fan_in = 32*9, fan_out = 64*9, c = sqrt(3 / ((288 + 576) / 2))
    c = np.sqrt(3 / ((32 * 9 + 64 * 9) / 2))
    assert I.Xavier().scale((64, 32, 3, 3)) == pytest.approx(c, rel=1e-12)
    x = np.asarray(I.Xavier()(KEY, (64, 32, 3, 3)))
    assert np.abs(x).max() <= c and np.abs(x).max() > 0.99 * c


def test_compute_fans_default_and_flax_axes():
    assert I.compute_fans((64, 32, 3, 3)) == (288, 576)
    assert I.compute_fans((3, 3, 32, 64), in_axis=-2, out_axis=-1) == (288, 576)
    with pytest.raises(ValueError, match="at least 2"):
        I.compute_fans((5,))


def test_xavier_on_vector_raises_like_mxnet():
    with pytest.raises(ValueError, match="at least 2D"):
        I.Xavier()(KEY, (5,))


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (6, 6), (6, 2, 2)])
@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
def test_orthogonal_is_orthogonal_at_its_scale(shape, rand_type):
    scale = 1.414
    w = np.asarray(I.Orthogonal(scale, rand_type)(KEY, shape), np.float64).reshape(
        shape[0], -1
    )
    nout, nin = w.shape
    gram = w @ w.T if nout <= nin else w.T @ w
    np.testing.assert_allclose(
        gram, scale**2 * np.eye(min(nout, nin)), atol=1e-5 * scale**2 * 10
    )


def test_orthogonal_bf16_is_not_upcast():
    assert I.Orthogonal()(KEY, (4, 4), jnp.bfloat16).dtype == jnp.bfloat16


def test_initializer_drops_into_jax_nn_style_call_with_positional_dtype():
    # flax calls kernel_init(key, shape, dtype) positionally
    init = I.Xavier(in_axis=-2, out_axis=-1)
    w = init(KEY, (3, 5), jnp.float32)
    assert w.shape == (3, 5)


def test_flax_linear_accepts_mxjax_kernel_init():
    nnx = pytest.importorskip("flax.nnx")
    layer = nnx.Linear(
        6,
        4,
        kernel_init=I.Xavier(in_axis=-2, out_axis=-1),
        bias_init=I.Zero(),
        rngs=nnx.Rngs(0),
    )
    assert layer.kernel.shape == (6, 4)
    c = np.sqrt(3 / 5)
    assert np.abs(np.asarray(layer.kernel)).max() <= c
    np.testing.assert_array_equal(layer.bias, 0.0)


F32 = "3.4028234663852886e+38"
BAD = [  # (build, argument, error, text of the rule in the message)
    (lambda: I.Uniform(-1), "scale", ValueError, "real in [0, 1.7014117331926443e+38]"),
    (lambda: I.Uniform(float("nan")), "scale", ValueError, "real in"),
    (lambda: I.Normal(-0.1), "sigma", ValueError, "real in [0, 4.2535293329816107e+37]"),
    (lambda: I.Normal("a"), "sigma", TypeError, "real in"),
    (lambda: I.Xavier(magnitude=0), "magnitude", ValueError, "real in (0, "),
    (lambda: I.Xavier(rnd_type="normal"), "rnd_type", ValueError, '"uniform"'),
    (lambda: I.Xavier(factor_type="fan_in"), "factor_type", ValueError, '"avg"'),
    (lambda: I.Xavier(in_axis=0), "in_axis", ValueError, "differ"),
    (lambda: I.MSRAPrelu(factor_type="x"), "factor_type", ValueError, '"avg"'),
    (lambda: I.MSRAPrelu(slope=float("inf")), "slope", ValueError, "real in"),
    (lambda: I.Orthogonal(rand_type="gaussian"), "rand_type", ValueError, '"normal"'),
    (lambda: I.Orthogonal(scale=-1), "scale", ValueError, f"real in [0, {F32}]"),
    (lambda: I.LSTMBias(forget_bias=None), "forget_bias", TypeError, "real in"),
    (lambda: I.FusedRNN(None, 0, 1, "lstm"), "num_hidden", ValueError, "int in [1, inf)"),
    (lambda: I.FusedRNN(None, 2, 0, "lstm"), "num_layers", ValueError, "int in [1, inf)"),
    (lambda: I.FusedRNN(None, 2.5, 1, "lstm"), "num_hidden", TypeError, "int in [1, inf)"),
    (lambda: I.FusedRNN(None, 2, 1, "LSTM"), "mode", ValueError, '"lstm"'),
    (lambda: I.FusedRNN(3, 2, 1, "lstm"), "init", TypeError, "Initializer"),
    (lambda: I.Constant("abc"), "value", TypeError, "finite number"),
    (lambda: I.Mixed(["a"], []), "as long as patterns", ValueError, ""),
    (lambda: I.Mixed(["("], [I.Zero()]), "valid regular expression", ValueError, ""),
    (lambda: I.Load([1, 2]), "param", TypeError, "mapping"),
]


@pytest.mark.parametrize(
    "build,arg,exc,rule", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_argument_raises_an_error_naming_it(build, arg, exc, rule):
    with pytest.raises(exc, match=arg) as info:
        build()
    assert rule in str(info.value)


def test_fusedrnn_without_init_or_global_init_raises():
    with pytest.raises(ValueError, match="global initializer"):
        I.FusedRNN(None, 2, 1, "gru")(KEY, (42,))


def test_mixed_and_load_need_names():
    with pytest.raises(TypeError, match="init_params"):
        I.Mixed([".*"], [I.Zero()])(KEY, (2,))
    with pytest.raises(TypeError, match="init_params"):
        I.Load({})(KEY, (2,))


def test_registry_names_and_case_insensitive_create():
    from mxjax.initializer._create import registry

    assert registry.names() == sorted(
        "bilinear constant fusedrnn lstmbias msraprelu normal one ones orthogonal uniform xavier zero zeros".split()
    )
    assert I.create("XAVIER", magnitude=2) == I.Xavier(magnitude=2)
    assert I.create({"initializer": "Uniform", "scale": 0.2}) == I.Uniform(0.2)
    inst = I.Normal()
    assert I.create(inst) is inst
    with pytest.raises(ValueError, match="already an instance"):
        I.create(inst, sigma=1)


def test_equality_follows_class_and_kwargs():
    assert I.Uniform(0.1) == I.Uniform(0.1)
    assert I.Uniform(0.1) != I.Uniform(0.2)
    assert I.Zero() != I.One()
    assert len({I.Zero(), I.Zero(), I.One()}) == 2


def test_xavier_dumps_includes_axes_only_when_not_mxnet_defaults():
    assert "in_axis" not in I.Xavier().dumps()
    flax = I.Xavier(in_axis=-2, out_axis=-1)
    assert I.create(flax.dumps()) == flax
