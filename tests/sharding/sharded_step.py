"""Run in a subprocess with 8 simulated host devices (see test_sharding.py)."""

from __future__ import annotations

import os
import sys
import warnings

os.environ["XLA_FLAGS"] = " ".join(  # the test session's flags (tests/conftest.py) too
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import mxjax as mx  # noqa: E402


def main(names: list[str]) -> None:
    assert jax.device_count() == 8, jax.devices()
    # multi_tensor="auto" never chooses the flat layout when parameters may be sharded
    many = {f"w{i}": jnp.zeros(4) for i in range(mx.optimizer.AUTO_MIN_LEAVES)}
    assert mx.optimizer.layout_of(mx.optimizer.create("adam").init(many)) == "per-leaf"
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    specs = {"fc_weight": P("data", "model"), "fc_bias": P("model"), "emb": P(None, "data")}
    shapes = {"fc_weight": (64, 32), "fc_bias": (32,), "emb": (8, 128)}
    keys = dict(zip(shapes, jax.random.split(jax.random.key(0), 3), strict=True))
    params = {k: jax.random.normal(keys[k], s) for k, s in shapes.items()}
    grads = {k: jnp.cos(3 * v) for k, v in params.items()}
    shard = {k: NamedSharding(mesh, specs[k]) for k in shapes}
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = mx.optimizer.create(name)
        want_p, want_s = params, opt.init(params)
        for _ in range(3):
            want_p, want_s = jax.jit(opt.update)(grads, want_s, want_p)

        p = jax.device_put(params, shard)
        g = jax.device_put(grads, shard)
        s = opt.init(p)
        # jit_update's step, compiled once (it takes params, state, grads; donated):
        # its memory is checked below
        compiled = mx.optimizer.jit_update(opt).lower(g, s, p).compile()
        for _ in range(3):
            p, s = compiled(p, s, g)
        for k in shapes:  # every parameter keeps its sharding
            assert p[k].sharding.is_equivalent_to(shard[k], len(shapes[k])), (name, k)
        # Every state slot shaped like a parameter is sharded like it (no full replica),
        # from init on (slots are {slot name: params-shaped tree}).
        flat_s = jax.tree_util.tree_flatten_with_path((s.slots, opt.init(p).slots))[0]
        for path, x in flat_s:
            leaf = jax.tree_util.keystr(path[2:3]).strip("[]'")
            if x.shape == shapes[leaf]:
                assert x.sharding.is_equivalent_to(shard[leaf], x.ndim), (name, path)
                per_device = {d.data.shape for d in x.addressable_shards}
                assert all(np.prod(sh) < np.prod(x.shape) for sh in per_device), (name, path)
        # The compiled (per-device) step's temporaries are smaller than a full replica of
        # the largest parameter: it is never gathered whole.
        # (Not SGLD: XLA generates its Gaussian noise for the whole leaf on each device.)
        full = max(int(np.prod(s_)) * 4 for s_ in shapes.values())
        mem = compiled.memory_analysis()
        assert mem is not None
        assert name == "sgld" or mem.temp_size_in_bytes < full, (name, mem.temp_size_in_bytes)
        for k in shapes:  # equals the unsharded result
            np.testing.assert_allclose(np.asarray(p[k]), np.asarray(want_p[k]), rtol=2e-6, atol=1e-7)
        print("ok", name, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
