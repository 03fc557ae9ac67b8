"""Xavier / MSRAPrelu on a zero-size kernel: a ValueError naming the parameter, not a
bare ZeroDivisionError (issue 19, item 9)."""

from __future__ import annotations

import jax
import pytest

import mxjax as mx

I = mx.initializer
KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "init",
    [
        I.Xavier(factor_type="in"),
        I.Xavier(factor_type="out", rnd_type="gaussian"),
        I.Xavier(),
        I.MSRAPrelu(),
        I.MSRAPrelu(factor_type="in"),
        I.Xavier(factor_type="in", in_axis=-2, out_axis=-1),
    ],
)
@pytest.mark.parametrize("shape", [(0, 0), (3, 0), (0, 3), (2, 0, 3), (0, 0, 3, 3)])
def test_a_zero_factor_names_the_parameter(init, shape):
    try:
        out = mx.initializer.init_params(init, KEY, {"conv": {"weight": shape}})
    except ValueError as e:
        assert "conv_weight" in str(e) and "factor of 0" in str(e), e
    else:  # a nonzero factor (e.g. avg with one fan left): an empty array is fine
        assert out["conv"]["weight"].shape == shape
        assert init.scale(shape) > 0


def test_the_scale_of_a_zero_size_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"shape \(3, 0\)"):
        I.Xavier(factor_type="in").scale((3, 0))
    with pytest.raises(ValueError, match="'w_weight'"):
        I.MSRAPrelu(factor_type="in").init_named("w_weight", KEY, (4, 0))
