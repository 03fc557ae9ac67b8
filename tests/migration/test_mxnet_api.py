"""MXNet's class names, its extension path (two MXNet classes ported line for line) and
``get_updater``, against the recorded MXNet 1.9.1 runs."""

from __future__ import annotations

import importlib.util
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mxjax as mx
from mxjax.mxnet_states import symbol_param_order
from tests.helpers import ROOT, optimizer_arrays, optimizer_cases, recorder
from tests.migration.test_resume_mxnet import STATES, module_optimizer, resume
from tests.optimizer.test_parity_mxnet import tolerance

CLASSES = {
    "SGD": "sgd", "ccSGD": "sgd", "NAG": "nag", "RMSProp": "rmsprop", "Adam": "adam",
    "AdaGrad": "adagrad", "AdaDelta": "adadelta", "Adamax": "adamax", "Nadam": "nadam",
    "DCASGD": "dcasgd", "Signum": "signum", "FTML": "ftml", "LBSGD": "lbsgd",
    "Ftrl": "ftrl", "LARS": "lars", "LAMB": "lamb", "AdamW": "adamw",
    "AdaBelief": "adabelief", "LANS": "lans", "contrib.GroupAdaGrad": "groupadagrad",
}


def richest_case(name: str) -> str:
    """The recorded case with the most arguments and no scheduler (one per optimizer)."""
    cases = optimizer_cases(name)
    return max(
        (c for c in cases if not cases[c]["scheduler"] and cases[c]["dtype"] == "float32"),
        key=lambda c: (len(cases[c]["jax_kwargs"]), c),
    )


def run(opt, rec: dict, steps: int = 4) -> list[list[np.ndarray]]:
    w0, grads = recorder().inputs(rec["shapes"], rec["dtype"], rec["seed"], rec["steps"])
    names = rec["names"]
    params = {n: jnp.asarray(w) for n, w in zip(names, w0)}
    state, step, out = opt.init(params), jax.jit(opt.update), []
    for g in grads[:steps]:
        params, state = step({n: jnp.asarray(x) for n, x in zip(names, g)}, state, params)
        out.append([np.asarray(params[n]) for n in names])
    return out


def check_against_mxnet(opt, name: str, cid: str, steps: int = 4) -> None:
    rec = optimizer_cases(name)[cid]
    arrays = optimizer_arrays(name)
    for k, got in enumerate(run(opt, rec, steps), 1):
        for i, (n, w) in enumerate(zip(rec["names"], got)):
            np.testing.assert_allclose(
                w.astype(np.float64), arrays[f"{cid}/w{k}/{i}"].astype(np.float64),
                err_msg=f"{name} {cid}: {n!r} after step {k}", **tolerance(rec["dtype"]),
            )


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_class_names_match_mxnet(cls_name: str) -> None:
    name = CLASSES[cls_name]
    cls = mx.optimizer
    for part in cls_name.split("."):
        cls = getattr(cls, part)
    cid = richest_case(name)
    opt = cls(**optimizer_cases(name)[cid]["jax_kwargs"])
    assert isinstance(opt, cls) and isinstance(opt, mx.optimizer.Optimizer)
    assert opt.name == name  # ccSGD is SGD, as MXNet's ccSGD subclasses SGD
    check_against_mxnet(opt, name, cid)


def test_sgld_class_is_create() -> None:
    """SGLD draws noise: its class must give create()'s optimizer (the recorded runs are
    replayed noise-free in tests/optimizer/test_sgld.py)."""
    p = {"w": jnp.arange(4.0)}
    a, b = mx.optimizer.SGLD(learning_rate=0.1, wd=0.1), mx.optimizer.create("sgld", learning_rate=0.1, wd=0.1)
    got = a.update(p, a.init(p), p)[0]["w"]
    np.testing.assert_array_equal(got, b.update(p, b.init(p), p)[0]["w"])


def test_create_optimizer_and_bad_names() -> None:
    opt = mx.optimizer.Optimizer.create_optimizer("Adam", learning_rate=0.1)
    assert opt.name == "adam" and opt.hyperparams["learning_rate"] == 0.1
    with pytest.raises(ValueError, match="Cannot find optimizer 'nope'"):
        mx.optimizer.Optimizer.create_optimizer("nope")
    with pytest.raises(TypeError, match="unexpected argument"):
        mx.optimizer.SGD(momentun=0.9)
    with pytest.raises(TypeError, match="expects a class"):
        mx.optimizer.Optimizer.register(lambda: None)
    record = mx.optimizer.Optimizer(init=lambda p: (), update=lambda g, s, p: (p, s))
    assert record.name == "custom" and record.init(None) == ()


@pytest.fixture(scope="module")
def ported():
    """examples/mxnet_ported_optimizers.py, imported as a user would; its registrations
    are removed afterwards (other tests iterate over the registry)."""
    spec = importlib.util.spec_from_file_location(
        "mxnet_ported_optimizers", ROOT / "examples" / "mxnet_ported_optimizers.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    for n in ("ported_adamax", "ported_dcasgd", "ported_nadam"):
        mx.optimizer.registry._entries.pop(n)


@pytest.mark.parametrize(
    "port,name",
    [("ported_adamax", "adamax"), ("ported_dcasgd", "dcasgd"), ("ported_nadam", "nadam")],
)
def test_ports_match_mxnet_and_builtins(ported, port: str, name: str) -> None:
    cid = richest_case(name)
    kw = optimizer_cases(name)[cid]["jax_kwargs"]
    mxnet_kw = {k: v for k, v in kw.items() if k not in ("lr_mult", "wd_mult", "wd_by_name")}
    if kw.get("wd_by_name"):  # Module's rule: MXNet applies it given param_idx2name
        mxnet_kw["param_idx2name"] = dict(enumerate(optimizer_cases(name)[cid]["names"]))
    opt = mx.optimizer.Optimizer.create_optimizer(port, **mxnet_kw)
    opt.set_lr_mult(kw.get("lr_mult", {}))  # MXNet's way; names are the leaves' names
    opt.set_wd_mult(kw.get("wd_mult", {}))
    assert type(opt).__name__.lower() == port and isinstance(opt, mx.optimizer.Optimizer)
    check_against_mxnet(opt, name, cid)
    rec = optimizer_cases(name)[cid]
    for got, want in zip(run(opt, rec), run(mx.optimizer.create(name, **kw), rec)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, **tolerance(rec["dtype"]))


def test_port_scheduler_lr_mult_and_checkpoint(ported, tmp_path) -> None:
    """A recorded case with a scheduler, then to_optax and a checkpoint round trip."""
    name = "adamax"
    cases = optimizer_cases(name)
    cid = next(c for c in sorted(cases) if cases[c]["scheduler"] and cases[c]["dtype"] == "float32")
    rec = cases[cid]
    kw = dict(rec["jax_kwargs"])
    cls, skw = rec["scheduler"]
    kw["lr_scheduler"] = getattr(mx.lr_scheduler, cls)(**skw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # [Q1] base_lr override
        opt = ported.Ported_Adamax(**kw)
    check_against_mxnet(opt, name, cid)
    p = {"a_weight": jnp.ones(3), "b_bias": jnp.ones(2)}
    state = opt.init(p)
    tx = mx.adapters.to_optax(opt)
    upd, _ = tx.update(p, tx.init(p), p)
    new, state = opt.update(p, state, p)
    np.testing.assert_allclose(jax.tree.map(jnp.add, p, upd)["a_weight"], new["a_weight"], rtol=1e-6)
    mx.checkpoint.save(tmp_path / "ck", state, new, optimizer=opt)
    back = mx.checkpoint.load(tmp_path / "ck", optimizer=opt, like_params=p)
    saved = opt.slots(state)
    assert set(saved["a_weight"]) == {"state[0]", "state[1]"}  # Adamax's (mean, var)
    for name, slots in opt.slots(back.state).items():
        for k, v in slots.items():
            np.testing.assert_array_equal(v, saved[name][k])
    # optax's tree_map_params sees the params-shaped slots
    mapped = optax.tree_map_params(tx, lambda x: x + 1, state)
    np.testing.assert_array_equal(opt.slots(mapped)["b_bias"]["state[1]"], saved["b_bias"]["state[1]"] + 1)
    assert int(back.state.count) == 1


def test_mxnet_style_errors() -> None:
    with pytest.raises(TypeError, match=r"update\(self, index, weight, grad, state\)"):
        class Bad(mx.optimizer.Optimizer):
            def create_state(self, index, weight):
                return None

            def update(self, weight, grad):
                return weight, None

    class Shape(mx.optimizer.Optimizer):
        def create_state(self, index, weight):
            return None

        def update(self, index, weight, grad, state):
            return weight[:1], state

    opt = Shape()
    p = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="returned a weight of shape"):
        opt.update(p, opt.init(p), p)
    with pytest.raises(TypeError, match=r"returned by Shape.init for these 1 parameters"):
        opt.update(p, mx.optimizer.Adam().init(p), p)
    u = mx.optimizer.get_updater(opt)
    u.states[0] = opt.init({"0": jnp.ones(3)})
    with pytest.raises(TypeError, match="built-in optimizers, not Shape"):
        u.get_states()
    with pytest.raises(ValueError, match="sym and param_dict"):
        Shape(sym=object())


def test_updater_equals_the_tree_update_and_round_trips() -> None:
    opt = mx.optimizer.Adam(learning_rate=0.1, wd=0.01)
    params = {"0": jnp.ones((2, 3)), "1": jnp.arange(3.0)}
    grads = {k: 0.5 * v - 0.2 for k, v in params.items()}
    u = mx.optimizer.get_updater(opt)
    eager = {int(k): v for k, v in params.items()}
    tree, state = params, opt.init(params)
    for _ in range(3):
        for i in eager:
            eager[i] = u(i, grads[str(i)], eager[i])
        tree, state = opt.update(grads, state, tree)
    for i in eager:
        np.testing.assert_allclose(eager[i], tree[str(i)], rtol=1e-6)
    # get_states -> set_states: a fresh updater (resumed at 3) continues identically
    u2 = mx.optimizer.get_updater(mx.optimizer.Adam(learning_rate=0.1, wd=0.01, begin_num_update=3))
    u2.set_states(u.get_states())
    for i in eager:
        np.testing.assert_allclose(u2(i, grads[str(i)], eager[i]), u(i, grads[str(i)], eager[i]), rtol=1e-6)
    with pytest.raises(ValueError, match="dump_optimizer"):
        u.get_states(dump_optimizer=True)


def test_updater_resumes_a_recorded_module_file() -> None:
    """MXNet's Module file into the Updater, indices named by the symbol's order."""
    name = "module_adam"
    case = json.loads((STATES / "cases.json").read_text())[name]
    arrays = np.load(STATES / f"{name}.npz")
    order = symbol_param_order(STATES / f"{name}-symbol.json")
    u = mx.optimizer.get_updater(module_optimizer(case), names=order)
    u.set_states((STATES / f"{name}.states").read_bytes())
    w = {i: jnp.asarray(arrays[f"w0/{n}"]) for i, n in enumerate(order)}
    for k in range(1, case["steps"] + 1):
        for i, n in enumerate(order):
            w[i] = u(i, jnp.asarray(arrays[f"g{k}/{n}"]), w[i])
            np.testing.assert_allclose(w[i], arrays[f"w{k}/{n}"], **tolerance("float32"))


def test_nadam_in_module_order_only_with_order() -> None:
    """Item 5: the Module Nadam run (symbol order fc2_*, fc1_*) needs ``order``; in the
    tree's sorted order it is far off."""
    case, arrays, params, r = resume("module_nadam")
    assert r.optimizer.hyperparams["order"] == ["fc2_weight", "fc2_bias", "fc1_weight", "fc1_bias"]
    sorted_opt = mx.optimizer.create(
        "nadam", **{k: v for k, v in r.optimizer.hyperparams.items() if k != "order"}
    )
    p1, s1 = r.optimizer.update(*(({n: jnp.asarray(arrays[f"g1/{n}"]) for n in params}, r.state, params)))
    p2, _ = sorted_opt.update({n: jnp.asarray(arrays[f"g1/{n}"]) for n in params}, r.state, params)
    want = arrays["w1/fc1_bias"]
    np.testing.assert_allclose(p1["fc1_bias"], want, **tolerance("float32"))
    assert np.max(np.abs(np.asarray(p2["fc1_bias"]) - want)) > 100 * 2e-6


def test_readme_porting_example_is_adamax() -> None:
    import re

    block = next(
        b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
        if "class MyAdamax" in b
    )
    ns: dict = {}
    exec(block, ns)  # noqa: S102 - our own README
    try:
        opt, builtin = ns["opt"], mx.optimizer.Adamax(learning_rate=0.1, wd=1e-4)
        p = {"fc_weight": jnp.array([1.0, -2.0, 0.5])}
        g = {"fc_weight": jnp.array([0.3, -1.0, 2.0])}
        s1, s2, p1, p2 = opt.init(p), builtin.init(p), p, p
        for _ in range(3):
            p1, s1 = opt.update(g, s1, p1)
            p2, s2 = builtin.update(g, s2, p2)
        np.testing.assert_allclose(p1["fc_weight"], p2["fc_weight"], rtol=1e-6)
    finally:
        mx.optimizer.registry._entries.pop("myadamax")


def test_port_multi_precision_keeps_mxnet_layout(ported) -> None:
    """float16 under multi_precision: MXNet's base layout (master, state), the update on
    the float32 master, equal to the built-in Adamax's."""
    kw = dict(learning_rate=0.1, multi_precision=True)
    opt, builtin = ported.Ported_Adamax(**kw), mx.optimizer.Adamax(**kw)
    p = {"a": jnp.linspace(-1, 1, 5).astype(jnp.float16)}
    g = {"a": (jnp.linspace(-1, 1, 5) * 0.3 + 0.1).astype(jnp.float16)}
    s1, s2, p1, p2 = opt.init(p), builtin.init(p), p, p
    view = opt.slots(s1)["a"]  # MXNet's (master, (mean, var)), by position
    assert list(view) == ["state[0]", "state[1][0]", "state[1][1]"]
    assert {v.dtype for v in view.values()} == {jnp.dtype(jnp.float32)}
    for _ in range(3):
        p1, s1 = jax.jit(opt.update)(g, s1, p1)
        p2, s2 = builtin.update(g, s2, p2)
    assert p1["a"].dtype == jnp.float16
    np.testing.assert_array_equal(p1["a"], p2["a"])
    np.testing.assert_allclose(
        opt.slots(s1)["a"]["state[0]"], builtin.slots(s2)["a"]["weight_master_copy"], rtol=1e-6
    )


def test_mxnet_continues_the_states_mxjax_writes() -> None:
    """get_states() bytes (tests/migration/written.py, float16 multi-precision and
    float32 Adam) were loaded by MXNet 1.9.1's Updater and continued 5 steps
    (tools/record_mxnet_states.py --from-mxjax); mxjax continuing its own file follows
    the same weights. mxjax still writes that file (to float32 round-off: XLA's flags
    differ between the test run and the script)."""
    from mxjax.nd._pickle import loads
    from tests.migration import written

    raw = (STATES / "mxjax_written.states").read_bytes()
    fresh, _ = written.written()
    for a, b in zip(jax.tree.leaves(loads(fresh)), jax.tree.leaves(loads(raw)), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    data = np.load(STATES / "mxjax_written_inputs.npz")
    weights = {i: data[f"w{written.WARM}/{i}"] for i in range(len(written.SHAPES))}
    want = np.load(STATES / "mxjax_written_mxnet.npz")
    u = mx.optimizer.get_updater(mx.optimizer.Adam(**written.KWARGS, begin_num_update=3))
    u.set_states(raw)
    w = {i: jnp.asarray(v) for i, v in weights.items()}
    for k in range(1, written.CONT + 1):
        for i in w:
            w[i] = u(i, jnp.asarray(data[f"g{written.WARM + k}/{i}"]), w[i])
            np.testing.assert_allclose(
                np.asarray(w[i], np.float64), want[f"w{k}/{i}"].astype(np.float64),
                err_msg=f"parameter {i} after step {k}", **tolerance(written.DTYPES[i]),
            )


def test_nadam_order_must_name_every_leaf() -> None:
    p = {"a": jnp.ones(2), "b": jnp.ones(3)}
    opt = mx.optimizer.nadam(order=["b", "c"])
    with pytest.raises(ValueError, match="parameter 'a' of 2 is not in it"):
        opt.update(p, opt.init(p), p)
    # the order is the schedule's: reversed order == the same tree with keys renamed
    rev = mx.optimizer.nadam(order=["b", "a"], learning_rate=0.1)
    swapped = {"a": p["b"], "b": p["a"]}  # sorted order puts the 3-vector first
    plain = mx.optimizer.nadam(learning_rate=0.1)
    g = {"a": jnp.full(2, 0.5), "b": jnp.full(3, -0.2)}
    got = rev.update(g, rev.init(p), p)[0]
    want = plain.update({"a": g["b"], "b": g["a"]}, plain.init(swapped), swapped)[0]
    np.testing.assert_array_equal(got["a"], want["b"])
    np.testing.assert_array_equal(got["b"], want["a"])
