"""``lr_mult`` / ``wd_mult`` are multipliers >= 0, as ``wd`` is (issue 19, item 5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mxjax as mx


@settings(max_examples=25, deadline=None, database=None)
@given(
    kind=st.sampled_from(["lr_mult", "wd_mult"]),
    name=st.sampled_from(["sgd", "adam", "lamb", "ftrl", "nag"]),
    m=st.floats(max_value=-1e-30, min_value=-1e30, allow_nan=False),
)
def test_a_negative_multiplier_is_refused_naming_it(kind, name, m):
    with pytest.raises(ValueError, match=rf"{kind}\['fc_weight'\] must be real in \[0, inf\)"):
        mx.optimizer.create(name, **{kind: {"fc_weight": m}})


def test_zero_and_positive_multipliers_are_accepted():
    mx.optimizer.sgd(lr_mult={"a": 0.0, "b": 2}, wd_mult={"a": 0, "b": 0.5})
