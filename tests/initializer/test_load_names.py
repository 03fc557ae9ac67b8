"""``initializer.Load`` refuses what it would silently get wrong (issue 19, item 10):
a file matching no parameter, two names for one parameter, values beyond the dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx

I = mx.initializer
KEY = jax.random.key(0)
SHAPES = {"fc": {"weight": (2, 3), "bias": (2,)}}


@pytest.mark.parametrize(
    "param",
    [
        {"dense0_weight": np.ones((2, 3)), "dense0_bias": np.ones(2)},  # other names
        {"arg:fc.weight": np.ones((2, 3))},  # another separator
        {},
    ],
)
@pytest.mark.parametrize("default", [None, I.Uniform()])
def test_a_file_matching_no_parameter_is_refused(param, default):
    with pytest.raises(ValueError, match="matches a parameter") as e:
        I.init_params(I.Load(param, default_init=default), KEY, SHAPES)
    assert "fc_weight" in str(e.value)


def test_a_partial_match_and_a_load_routed_by_mixed_work(tmp_path):
    out = I.init_params(
        I.Load({"fc_weight": np.ones((2, 3)), "other": np.ones(1)}, I.Zero()), KEY, SHAPES
    )
    np.testing.assert_array_equal(out["fc"]["weight"], np.ones((2, 3)))
    mixed = I.Mixed(["fc_weight", ".*"], [I.Load({"fc_weight": np.ones((2, 3))}), I.Zero()])
    I.init_params(mixed, KEY, SHAPES)
    bad = I.Mixed(["fc_weight", ".*"], [I.Load({"x_weight": np.ones((2, 3))}), I.Zero()])
    with pytest.raises(ValueError, match="matches a parameter"):
        I.init_params(bad, KEY, SHAPES)


@pytest.mark.parametrize(
    "names", [("arg:fc_weight", "aux:fc_weight"), ("fc_weight", "aux:fc_weight"), ("aux:w", "w")]
)
def test_two_names_for_one_parameter_are_refused(names, tmp_path):
    param = {n: np.full((2, 3), i, np.float32) for i, n in enumerate(names)}
    with pytest.raises(ValueError, match="both name") as e:
        I.Load(param)
    assert all(n in str(e.value) for n in names)
    path = tmp_path / "m.params"
    mx.nd.save(path, param)
    with pytest.raises(ValueError, match="both name"):
        I.Load(str(path))


@pytest.mark.parametrize(
    "value,dtype",
    [(1e39, jnp.float32), (-3.5e38, jnp.float32), (7e4, jnp.float16), (4e38, jnp.bfloat16)],
)
def test_values_beyond_the_dtype_are_refused_naming_the_parameter(value, dtype):
    load = I.Load({"fc_weight": np.array([[1.0, value, 0, 0, 0, 0]]).reshape(2, 3)})
    with pytest.raises(ValueError, match=r"fc_weight.*beyond") as e:
        load.init_named("fc_weight", KEY, (2, 3), dtype)
    assert jnp.dtype(dtype).name in str(e.value)


def test_values_the_dtype_holds_and_nonfinite_values_load_as_they_are():
    load = I.Load({"fc_weight": np.array([[3e38, -1, np.inf], [np.nan, 0, 1e-3]])})
    out = load.init_named("fc_weight", KEY, (2, 3), jnp.float32)
    assert out.dtype == jnp.float32 and float(out[0, 0]) == pytest.approx(3e38)
