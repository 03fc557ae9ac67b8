"""The README's code examples run as written."""

import re

import jax.numpy as jnp
import numpy as np

from tests.helpers import ROOT


def readme_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_user_optimizer_example_runs():
    block = next(b for b in readme_blocks() if "mx.optimizer.register" in b)
    ns: dict = {}
    exec(block, ns)  # noqa: S102 - our own README
    mx, opt = ns["mx"], ns["opt"]
    try:
        p = {"fc_weight": jnp.array([1.0, -1.0])}
        new, _ = opt.update({"fc_weight": jnp.array([0.5, -2.0])}, opt.init(p), p)
        # sign(0.9*0 + g + wd*w) with wd=1e-4: the sign of g here
        np.testing.assert_allclose(new["fc_weight"], [0.9, -0.9], rtol=1e-6)
    finally:
        mx.optimizer.registry._entries.pop("msign")


def test_readme_optimizer_table_lists_every_registered_optimizer():
    import mxjax as mx

    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Optimizers") : text.index("`[Qn]` refers")]
    missing = [n for n in mx.optimizer.names() if f"`{n}`" not in table]
    assert not missing


def test_readme_packed_example_runs_and_equals_the_unpacked_step():
    import jax

    import mxjax as mx

    block = next(b for b in readme_blocks() if "opt.pack(params)" in b)
    params = {"fc_weight": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "fc_bias": jnp.ones(3)}
    batch = jnp.arange(4.0)

    def loss(p, x):
        return jnp.sum(jnp.tanh(p["fc_weight"] @ x + p["fc_bias"]) ** 2)

    ns = {"mx": mx, "jax": jax, "params": params, "loss": loss, "batch": batch}
    exec(block, ns)  # noqa: S102 - our own README
    opt = mx.optimizer.create("adam", learning_rate=1e-3, multi_tensor=True)
    want, _ = opt.update(jax.grad(loss)(params, batch), opt.init(params), params)
    for k in params:
        np.testing.assert_array_equal(ns["params"][k], want[k])
