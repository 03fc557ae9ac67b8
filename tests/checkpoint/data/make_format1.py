"""Writes the format-1 fixtures with mxjax at ea09a77 (run with PYTHONPATH=<that tree>)."""
import sys, warnings
import jax, jax.numpy as jnp, numpy as np
import mxjax as mx
from mxjax import checkpoint
out = sys.argv[1]
assert checkpoint.VERSION == 1
params = {"fc": {"weight": jnp.linspace(-1, 1, 6).reshape(2, 3)}, "h": jnp.asarray([0.5, -2.0], jnp.bfloat16)}
grads = jax.tree.map(lambda x: jnp.cos(3 * x).astype(x.dtype), params)
for name, kw, multi in [("adam", {"multi_precision": True, "learning_rate": 0.1}, False),
                        ("nadam", {"learning_rate": 0.1}, False),
                        ("adam", {"learning_rate": 0.1}, True)]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = mx.optimizer.create(name, multi_tensor=multi, **kw)
        p, s = params, opt.init(params)
        for _ in range(2):
            p, s = opt.update(grads, s, p)
    checkpoint.save(f"{out}/format1_{name}{'_multi' if multi else ''}.npz", s, p, optimizer=opt)
