"""init_params: per-leaf keys, shape leaves, name dispatch errors, per_param."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax.initializer as I

KEY = jax.random.key(0)


def test_adding_a_parameter_leaves_the_others_unchanged():
    small = {"fc1": {"weight": (4, 3), "bias": (4,)}}
    big = {"fc1": {"weight": (4, 3), "bias": (4,)}, "fc0": {"weight": (3, 5)}}
    a = I.init_params(I.Uniform(), KEY, small)
    b = I.init_params(I.Uniform(), KEY, big)
    np.testing.assert_array_equal(a["fc1"]["weight"], b["fc1"]["weight"])


def test_leaves_get_different_keys():
    out = I.init_params(I.Uniform(), KEY, {"a_weight": (50,), "b_weight": (50,)})
    assert not np.array_equal(out["a_weight"], out["b_weight"])


def test_leaf_key_is_crc32_of_name_not_python_hash():
    import zlib

    out = I.init_params(I.Uniform(), KEY, {"fc": {"weight": (5,)}})
    want = I.Uniform()(jax.random.fold_in(KEY, zlib.crc32(b"fc_weight")), (5,))
    np.testing.assert_array_equal(out["fc"]["weight"], want)


def test_tuple_of_ints_is_a_shape_leaf_and_structure_is_kept():
    shapes = {
        "layers": [{"weight": (2, 3), "bias": (2,)}, {"weight": (1, 2)}],
        "gamma": (3,),
        "s_max": (),
    }
    out = I.init_params(I.One(), KEY, shapes)
    assert jax.tree.structure(out) == jax.tree.structure(
        {"layers": [{"weight": 0, "bias": 0}, {"weight": 0}], "gamma": 0, "s_max": 0}
    )
    assert out["layers"][0]["weight"].shape == (2, 3)
    np.testing.assert_array_equal(out["layers"][0]["bias"], 0.0)
    assert out["s_max"].shape == () and out["s_max"] == 1.0


def test_shape_dtype_struct_and_array_leaves_keep_their_dtype():
    shapes = {
        "a_weight": jax.ShapeDtypeStruct((2, 2), jnp.bfloat16),
        "b_weight": jnp.zeros((3,), jnp.float16),
        "c_weight": (2,),
    }
    out = I.init_params(
        I.Normal(),
        KEY,
        shapes,
        dtype=jnp.float64 if jax.config.x64_enabled else jnp.float16,
    )
    assert out["a_weight"].dtype == jnp.bfloat16
    assert out["b_weight"].dtype == jnp.float16
    assert out["c_weight"].dtype == (
        jnp.float64 if jax.config.x64_enabled else jnp.float16
    )


def test_works_with_eval_shape_output():
    shapes = jax.eval_shape(
        lambda: {"w_weight": jnp.zeros((3, 4)), "w_bias": jnp.zeros(3)}
    )
    out = I.init_params("xavier", KEY, shapes)
    assert out["w_weight"].shape == (3, 4)
    np.testing.assert_array_equal(out["w_bias"], 0.0)


def test_batchnorm_states_follow_mxnet_legacy_rules():
    out = I.init_params(
        I.Uniform(),
        KEY,
        {"bn": {"gamma": (2,), "beta": (2,), "moving_mean": (2,), "moving_var": (2,)}},
    )
    assert [
        float(out["bn"][k][0]) for k in ("gamma", "beta", "moving_mean", "moving_var")
    ] == [1, 0, 0, 1]


def test_unknown_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="'Dense_0_kernel'"):
        I.init_params(I.Xavier(), KEY, {"Dense_0": {"kernel": (3, 4)}})


def test_non_shape_leaf_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="fc_weight"):
        I.init_params(I.Xavier(), KEY, {"fc_weight": "3x4"})


def test_per_param_applies_weight_rule_whatever_the_name_q28():
    out = I.init_params(
        I.Uniform(),
        KEY,
        {"foo_bias": (3,), "x": (2,)},
        per_param={"foo_bias": I.Constant(3), "x": "ones"},
    )
    np.testing.assert_array_equal(out["foo_bias"], 3.0)
    np.testing.assert_array_equal(out["x"], 1.0)


def test_per_param_unknown_name_raises():
    with pytest.raises(ValueError, match="nope"):
        I.init_params(
            I.Uniform(), KEY, {"a_weight": (3,)}, per_param={"nope": I.Zero()}
        )


def test_mixed_without_match_raises_value_error():
    with pytest.raises(ValueError, match="did not match any pattern"):
        I.init_params(I.Mixed(["fc"], [I.Zero()]), KEY, {"conv_weight": (2,)})


def test_load_shape_mismatch_names_parameter():
    load = I.Load({"arg:fc_weight": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="fc_weight.*Shape mismatch"):
        I.init_params(load, KEY, {"fc_weight": (3, 2)})


def test_load_casts_to_requested_dtype_without_upcast():
    load = I.Load({"fc_weight": np.arange(3, dtype=np.float64)})
    out = I.init_params(
        load, KEY, {"fc_weight": jax.ShapeDtypeStruct((3,), jnp.bfloat16)}
    )
    assert out["fc_weight"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out["fc_weight"], np.float32), [0, 1, 2])
