"""Resume MXNet 1.9.1 runs from their recorded ``.states`` files and continue as MXNet did.

``tools/record_mxnet_states.py`` saved each run after 3 updates (Module's
``save_checkpoint(..., save_optimizer_states=True)`` or ``Trainer.save_states``), then
recorded MXNet's own continuation after loading: 5 gradients and the weights after each.
mxjax loads the same file and must follow the same weights.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax.mxnet_states import MXNetStatesError, load_states, symbol_param_order
from tests.helpers import REFERENCE
from tests.optimizer.test_parity_mxnet import tolerance

STATES = REFERENCE / "states"


@cache
def cases() -> dict:
    """MXNet 1.9.1's cases and MXNet 2.0.0b1's (AdamW, AdaBelief, LANS Trainer files)."""
    return {
        **json.loads((STATES / "cases.json").read_text()),
        **json.loads((STATES / "cases_mxnet2.json").read_text()),
    }


def module_optimizer(case: dict) -> mx.optimizer.Optimizer:
    """The optimizer as the recorded Module built it: ``rescale_grad = 1/batch``, weight
    decay only on ``*_weight``/``*_gamma`` (Module's idx2name rule), resumed at 3."""
    kw = dict(case["kwargs"], rescale_grad=0.25, wd_by_name=True,
              begin_num_update=case["begin_num_update"])
    if case["scheduler"]:
        cls, skw = case["scheduler"]
        kw["lr_scheduler"] = getattr(mx.lr_scheduler, cls)(**skw)
    if case["optimizer"] == "nadam":
        kw["order"] = symbol_param_order(STATES / f"{name_of(case)}-symbol.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # [Q1] lr overrides base_lr
        return mx.optimizer.create(case["optimizer"], **kw)


def name_of(case: dict) -> str:
    return next(k for k, v in cases().items() if v is case)


FROZEN = "fc2_bias"  # in the *_frozen cases: no state, no gradient


def resume(name: str, frozen_in_tree: bool = False):
    """Load a case; the frozen parameter of ``*_frozen`` cases is left out of the tree
    (the way to keep it frozen) unless ``frozen_in_tree``."""
    case = cases()[name]
    arrays = np.load(STATES / f"{name}.npz")
    keep = [n for n in case["order"] if frozen_in_tree or f"g1/{n}" in arrays]
    params = {n: jnp.asarray(arrays[f"w0/{n}"]) for n in keep}
    if case["kind"] == "module":
        r = load_states(
            STATES / f"{name}.states",
            params,
            optimizer=module_optimizer(case),
            symbol=STATES / f"{name}-symbol.json",
            begin_num_update=case["begin_num_update"],
        )
    else:
        # Trainer's order is all its parameters sorted, the frozen one included
        r = load_states(STATES / f"{name}.states", params, order=case["order"])
    return case, arrays, params, r


@pytest.mark.parametrize("name", sorted(cases()))
def test_continues_as_mxnet(name: str) -> None:
    if name == "trainer_lars":  # MXNet's Trainer gives LARS no names [Q2]: use indices
        return continues_by_index(name)
    case, arrays, params, r = resume(name)
    assert r.kind == case["kind"] and r.num_update == case["begin_num_update"]
    assert r.missing == ()
    assert set(r.counts.values()) == {case["begin_num_update"]}
    if case["kind"] == "trainer":  # the pickled optimizer's hyperparameters and scheduler
        assert r.hyperparams["num_update"] == case["begin_num_update"]
        for k, v in case["kwargs"].items():
            if v is not None:
                assert r.hyperparams[{"learning_rate": "lr", "eps": "float_stable_eps"}.get(k, k)] == v
        sched = case["scheduler"]
        assert (r.scheduler or {}).get("class") == (sched[0] if sched else None)
    continues(name, case, arrays, params, r.optimizer, r.state)


def continues(name: str, case: dict, arrays, params, opt, state) -> None:
    """``opt`` from ``state`` follows MXNet's recorded continuation."""
    step = jax.jit(opt.update)
    for k in range(1, case["steps"] + 1):
        grads = {n: jnp.asarray(arrays[f"g{k}/{n}"]) for n in params}
        params, state = step(grads, state, params)
        for n in params:
            np.testing.assert_allclose(
                np.asarray(params[n], np.float64),
                arrays[f"w{k}/{n}"].astype(np.float64),
                err_msg=f"{name}: {n!r} after continued step {k}",
                **tolerance(case["dtype"]),
            )


@pytest.mark.parametrize("name", ["module_adam_frozen", "trainer_adam_frozen"])
def test_frozen_parameters_have_no_state(name: str) -> None:
    case, arrays, params, r = resume(name, frozen_in_tree=True)
    assert r.missing == (FROZEN,)
    fresh = r.optimizer.slots(r.optimizer.init(params))[FROZEN]
    got = r.optimizer.slots(r.state)[FROZEN]
    assert list(got) == list(fresh) != []
    for k in fresh:
        np.testing.assert_array_equal(got[k], fresh[k])
    np.testing.assert_array_equal(arrays[f"w{case['steps']}/{FROZEN}"], arrays[f"w0/{FROZEN}"])


@pytest.mark.parametrize("name", ["module_adam_frozen", "trainer_adam_fp16", "trainer_nadam"])
def test_loads_into_multi_tensor(name: str) -> None:
    """The same file into a ``multi_tensor=True`` optimizer (flat buffers; a float16
    master copy; Nadam's schedule in ``extra``) continues as MXNet did."""
    case, arrays, params, r = resume(name)
    hp = {**r.optimizer.hyperparams, "multi_tensor": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # [Q1] lr overrides base_lr
        opt = mx.optimizer.create(r.optimizer.name, **hp)
    again = load_states(
        STATES / f"{name}.states", params, optimizer=opt,
        order=symbol_param_order(STATES / f"{name}-symbol.json")
        if case["kind"] == "module" else case["order"],
        begin_num_update=case["begin_num_update"],
    )
    assert type(again.state.slots).__name__ == "MultiSlots"
    for n, slots in r.optimizer.slots(r.state).items():
        for k, v in slots.items():
            np.testing.assert_array_equal(opt.slots(again.state)[n][k], v)
    continues(name, case, arrays, params, opt, again.state)


def test_bad_arguments_are_named() -> None:
    case = cases()["module_adam"]
    arrays = np.load(STATES / "module_adam.npz")
    params = {n: jnp.asarray(arrays[f"w0/{n}"]) for n in case["order"]}
    path, sym = STATES / "module_adam.states", STATES / "module_adam-symbol.json"
    opt = module_optimizer(case)
    with pytest.raises(TypeError, match="begin_num_update"):
        load_states(path, params, optimizer=opt, symbol=sym)
    with pytest.raises(TypeError, match="pass optimizer="):
        load_states(path, params, symbol=sym, begin_num_update=3)
    with pytest.raises(TypeError, match="symbol="):
        load_states(path, params, optimizer=opt, begin_num_update=3)
    with pytest.raises(ValueError, match=r"parameters \['fc1_bias'\] are not in order"):
        load_states(path, params, optimizer=opt, order=["fc2_weight", "fc2_bias", "fc1_weight"],
                    begin_num_update=3)
    # a wrong order (sorted instead of the symbol's) is caught by the shapes, by name
    with pytest.raises(MXNetStatesError, match="the state of 'fc1_bias' holds"):
        load_states(path, params, optimizer=opt, order=sorted(params), begin_num_update=3)
    with pytest.raises(MXNetStatesError, match="this optimizer keeps"):
        load_states(path, params, optimizer=mx.optimizer.SGD(momentum=0.9), symbol=sym,
                    begin_num_update=3)


def continues_by_index(name: str) -> None:
    """Gluon's Trainer gives the optimizer no parameter names, so MXNet's LARS names
    index ``i`` ``str(i)`` and exempts no bias from the trust ratio [Q2]; a tree keyed by
    the indices continues the run exactly."""
    case = cases()[name]
    arrays = np.load(STATES / f"{name}.npz")
    order = case["order"]
    params = {str(i): jnp.asarray(arrays[f"w0/{n}"]) for i, n in enumerate(order)}
    r = load_states(STATES / f"{name}.states", params, order=[str(i) for i in range(len(order))])
    state, step = r.state, jax.jit(r.optimizer.update)
    for k in range(1, case["steps"] + 1):
        grads = {str(i): jnp.asarray(arrays[f"g{k}/{n}"]) for i, n in enumerate(order)}
        params, state = step(grads, state, params)
        for i, n in enumerate(order):
            np.testing.assert_allclose(
                np.asarray(params[str(i)]), arrays[f"w{k}/{n}"],
                err_msg=f"{name}: {n!r} after continued step {k}", **tolerance("float32"),
            )


def test_symbol_order_is_modules() -> None:
    """The symbol file's argument order (BatchNorm's moving_mean/var excluded) is the
    parameter order MXNet's Module recorded, for every Module case."""
    for name, case in cases().items():
        if case["kind"] == "module":
            assert symbol_param_order(STATES / f"{name}-symbol.json") == case["order"], name
