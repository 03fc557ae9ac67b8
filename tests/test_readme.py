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
