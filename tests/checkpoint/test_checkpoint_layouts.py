"""One state, any layout (issue 15 item 4): ``opt.slots`` and ``opt.state_from_slots``
on the per-leaf, multi-tensor and packed layouts, checkpoints that cross layouts, and
the checkpoints of format 1 (written by mxjax before the layout-independent form)."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxjax as mx
from mxjax import checkpoint
from tests.helpers import assert_bit_identical, bits

DATA = Path(__file__).with_name("data")
LAYOUTS = ("leaf", "multi", "packed")
# a float16 leaf under multi_precision (a master copy), an empty leaf (in no group)
PARAMS = {
    "fc": {"weight": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "bias": jnp.ones(3)},
    "h": jnp.asarray([0.5, -2.0, 3.0], jnp.float16),
    "e": jnp.ones((0, 2)),
}
GRADS = jax.tree.map(lambda x: jnp.cos(3 * x).astype(x.dtype), PARAMS)
CASES = {  # rule kinds: elementwise, per-leaf scalars, an init_slots, global extra
    "adam": {"multi_precision": True},
    "lamb": {"multi_precision": True},
    "dcasgd": {"momentum": 0.9, "multi_precision": True},
    "nadam": {},
}


def make(name: str, layout: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 without multi_precision (nadam)
        opt = mx.optimizer.create(name, multi_tensor=layout != "leaf", **CASES[name])
    pack = (lambda t: opt.pack(t)) if layout == "packed" else (lambda t: t)
    return opt, pack


def run(opt, pack, params, state, steps: int):
    step = jax.jit(opt.update)
    for _ in range(steps):
        params, state = step(pack(GRADS), state, params)
    return params, state


def unpacked(p):
    return p.unpack() if isinstance(p, mx.optimizer.Packed) else p


@pytest.fixture(scope="module")
def trained():
    """Per (optimizer, layout): params and state after two steps, and the view."""
    out = {}
    for name in CASES:
        for layout in LAYOUTS:
            opt, pack = make(name, layout)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = opt.init(pack(PARAMS))
            p, s = run(opt, pack, pack(PARAMS), state, 2)
            out[name, layout] = (p, s, opt.slots(s))
    return out


@pytest.mark.parametrize("name", CASES)
def test_slots_view_is_the_same_on_every_layout(trained, name):
    views = [trained[name, layout][2] for layout in LAYOUTS]
    names = {"fc_weight", "fc_bias", "h", "e"}
    assert set(views[0]) == names
    assert ("weight_master_copy" in views[0]["h"]) == ("multi_precision" in CASES[name])
    assert "weight_master_copy" not in views[0]["fc_weight"]
    for view in views:
        assert jax.tree.structure(view) == jax.tree.structure(views[0])
        for pname, slots in view.items():
            want = PARAMS["fc"][pname[3:]] if pname.startswith("fc_") else PARAMS[pname]
            for slot, x in slots.items():
                if name != "dcasgd" or slot != "momentum":
                    assert x.shape == want.shape, (pname, slot)
        # the same values on every layout (to float32 round-off: FMA contraction)
        for a, b in zip(jax.tree.leaves(view), jax.tree.leaves(views[0]), strict=True):
            np.testing.assert_allclose(
                np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-5, atol=1e-7
            )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", CASES)
def test_state_from_slots_inverts_slots(trained, name, layout):
    p, s, view = trained[name, layout]
    opt, _ = make(name, layout)
    rebuilt = opt.state_from_slots(view, p, count=s.count, extra=s.extra)
    assert_bit_identical(rebuilt, s)


def test_state_from_slots_names_what_is_wrong():
    opt, _ = make("adam", "multi")
    view = opt.slots(opt.init(PARAMS))
    with pytest.raises(ValueError, match="no slot 'var' given for parameter 'fc_bias'"):
        opt.state_from_slots({**view, "fc_bias": {"mean": jnp.zeros(3)}}, PARAMS)
    bad = {**view, "fc_bias": {**view["fc_bias"], "var": jnp.zeros(4)}}
    with pytest.raises(ValueError, match=r"'var' of parameter 'fc_bias' is float32\[4\]"):
        opt.state_from_slots(bad, PARAMS)
    with pytest.raises(ValueError, match="does not have.*fc_bias/nu"):
        opt.state_from_slots({**view, "fc_bias": {**view["fc_bias"], "nu": 1}}, PARAMS)
    with pytest.raises(TypeError, match=r"\{parameter name: \{slot name: array\}\}"):
        opt.state_from_slots([1, 2], PARAMS)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.filterwarnings("ignore:Accumulating with float16")  # load's template
def test_a_checkpoint_crosses_layouts(trained, tmp_path, name):
    """Saved on any layout, loaded on any: the same state; a round trip through
    another layout continues bit for bit as if nothing had happened."""
    for a in LAYOUTS:
        p_a, s_a, view_a = trained[name, a]
        opt_a, pack_a = make(name, a)
        checkpoint.save(tmp_path / f"{a}.npz", s_a, unpacked(p_a), optimizer=opt_a)
        for b in LAYOUTS:
            opt_b, pack_b = make(name, b)
            ck = checkpoint.load(
                tmp_path / f"{a}.npz", optimizer=opt_b, like_params=PARAMS
            )
            assert_bit_identical(opt_b.slots(ck.state), view_a)
            assert_bit_identical((ck.state.count, ck.state.extra), (s_a.count, s_a.extra))
            assert jax.tree.structure(ck.state) == jax.tree.structure(
                trained[name, b][1]
            )
            # back through b into a: continues exactly as a straight run of a
            checkpoint.save(tmp_path / "b.npz", ck.state, ck.params, optimizer=opt_b)
            back = checkpoint.load(tmp_path / "b.npz", optimizer=opt_a, like_params=PARAMS)
            got = run(opt_a, pack_a, pack_a(back.params), back.state, 2)
            want = run(opt_a, pack_a, p_a, s_a, 2)
            assert_bit_identical(got, want)


def test_checkpoint_stores_the_state_by_parameter_name(tmp_path):
    opt, pack = make("adam", "packed")
    p, s = run(opt, pack, pack(PARAMS), opt.init(pack(PARAMS)), 1)
    checkpoint.save(tmp_path / "c.npz", s, optimizer=opt)
    meta = checkpoint.describe(tmp_path / "c.npz")
    assert meta["version"] == 2 and meta["state_form"] == "slots"
    paths = {spec["path"] for spec in meta["state"]}
    assert "['slots']['fc_weight']['mean']" in paths
    assert "['slots']['h']['weight_master_copy']" in paths
    assert {"['count']", "['skipped']"} <= paths


def test_a_slots_checkpoint_needs_an_optstate_template(tmp_path):
    opt, _ = make("adam", "leaf")
    checkpoint.save(tmp_path / "c.npz", opt.init(PARAMS), optimizer=opt)
    with pytest.raises(ValueError, match="OptState template"):
        checkpoint.load(tmp_path / "c.npz", like_state={"a": jnp.ones(2)})


def stored(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint's state arrays by stored path, read with NumPy (no mxjax)."""
    with zipfile.ZipFile(path) as zf:
        read = lambda key: np.lib.format.read_array(  # noqa: E731
            zf.open(f"{key}.npy"), allow_pickle=False
        )
        meta = json.loads(read("__mxjax_checkpoint__").tobytes())
        assert meta["version"] == 1
        out = {}
        for i, spec in enumerate(meta["state"]):
            arr = read(f"state_{i}")
            out[spec["path"]] = arr.view(spec["dtype"]) if "stored_as" in spec else arr
        return out


OLD_PARAMS = {
    "fc": {"weight": jnp.linspace(-1, 1, 6).reshape(2, 3)},
    "h": jnp.asarray([0.5, -2.0], jnp.bfloat16),
}


@pytest.mark.parametrize("layout", ["leaf", "multi"])
@pytest.mark.parametrize("name,kw", [("adam", {"multi_precision": True}), ("nadam", {})])
def test_format_1_per_leaf_checkpoints_still_load(name, kw, layout):
    """Files written by mxjax at ea09a77 (data/make_format1.py) load into either layout."""
    path = DATA / f"format1_{name}.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = mx.optimizer.create(
            name, learning_rate=0.1, multi_tensor=layout == "multi", **kw
        )
        ck = checkpoint.load(path, optimizer=opt, like_params=OLD_PARAMS)
    old = stored(path)
    view = opt.slots(ck.state)
    names = (*opt.rule.slots, "weight_master_copy")
    for key, pname in (("['fc']['weight']", "fc_weight"), ("['h']", "h")):
        for i, slot in enumerate(names):
            if f".slots{key}[{i}]" in old:
                np.testing.assert_array_equal(
                    bits(view[pname][slot]), bits(old[f".slots{key}[{i}]"])
                )
            else:
                assert slot not in view[pname]
    assert int(ck.state.count) == int(old[".count"]) == 2
    for path_, x in jax.tree_util.tree_flatten_with_path(ck.state.extra)[0]:
        np.testing.assert_array_equal(bits(x), bits(old[".extra" + jax.tree_util.keystr(path_)]))


@pytest.mark.filterwarnings("ignore:Accumulating with bfloat16")  # load's template
def test_format_1_multi_tensor_checkpoint_is_refused_clearly():
    opt = mx.optimizer.create("adam", learning_rate=0.1, multi_tensor=True)
    with pytest.raises(ValueError, match="format 1 and holds a multi-tensor state"):
        checkpoint.load(DATA / "format1_adam_multi.npz", optimizer=opt, like_params=OLD_PARAMS)
    with pytest.raises(ValueError, match="format 1.*optimizer="):
        checkpoint.load(
            DATA / "format1_adam.npz",
            like_state=jax.eval_shape(opt.init, OLD_PARAMS),
        )
