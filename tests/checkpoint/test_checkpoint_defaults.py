"""``checkpoint.load`` compares effective hyperparameters: an argument passed at its
default equals one left out (issue 19, item 11)."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import mxjax as mx
from mxjax import checkpoint

PARAMS = {"w": jnp.ones(3)}
SAME = [
    ("sgd", {}, {"wd": 0.0, "multi_tensor": False}),
    ("sgd", {"wd": 0.0}, {}),
    ("sgd", {}, {"learning_rate": 0.01, "momentum": 0.0, "rescale_grad": 1.0}),
    ("sgd", {}, {"lr_mult": {}, "wd_mult": None, "clip_gradient": None}),
    ("adam", {}, {"learning_rate": 0.001, "beta1": 0.9, "epsilon": 1e-8}),
    ("adam", {"begin_num_update": 0, "skip_nonfinite": False}, {"wd_by_name": False}),
    ("lamb", {}, {"lower_bound": None, "bias_correction": True, "multi_precision": False}),
    ("nag", {"wd": 0}, {"wd": 0.0}),
    ("adam", {}, {"multi_tensor": True}),  # layout only: a state loads into either
]


@pytest.mark.parametrize("name,saved_kw,load_kw", SAME)
def test_explicit_defaults_match(tmp_path, name, saved_kw, load_kw):
    path = tmp_path / "c.npz"
    opt = mx.optimizer.create(name, **saved_kw)
    checkpoint.save(path, opt.init(PARAMS), PARAMS, optimizer=opt)
    checkpoint.load(path, optimizer=mx.optimizer.create(name, **load_kw), like_params=PARAMS)


@pytest.mark.parametrize(
    "name,saved_kw,load_kw,diff",
    [
        ("sgd", {}, {"wd": 0.01}, "wd: checkpoint 0.0, optimizer 0.01"),
        ("sgd", {"learning_rate": 0.1}, {}, "learning_rate: checkpoint 0.1, optimizer 0.01"),
        ("sgd", {}, {"lr_mult": {"w": 2.0}}, "lr_mult"),
    ],
)
def test_other_effective_values_are_still_refused(tmp_path, name, saved_kw, load_kw, diff):
    path = tmp_path / "c.npz"
    opt = mx.optimizer.create(name, **saved_kw)
    checkpoint.save(path, opt.init(PARAMS), PARAMS, optimizer=opt)
    other = mx.optimizer.create(name, **load_kw)
    with pytest.raises(ValueError, match="other hyperparameters") as e:
        checkpoint.load(path, optimizer=other, like_params=PARAMS)
    assert diff in str(e.value)
