"""An mxjax-written ``.states`` file for MXNet to load (``tools/record_mxnet_states.py
--from-mxjax`` continues it in MXNet 1.9.1; ``test_mxnet_api.py`` checks both sides).

Adam with ``multi_precision=True`` on a float16 and a float32 parameter, 3 updates
through mxjax's ``get_updater``, then ``get_states()``. Run as a script to (re)write
``tests/reference/states/mxjax_written.states`` and ``mxjax_written_inputs.npz``.
"""

from __future__ import annotations

import numpy as np

KWARGS = {"learning_rate": 0.05, "multi_precision": True}
DTYPES = ("float16", "float32")
SHAPES = ((3, 2), (4,))
WARM, CONT = 3, 5


def inputs() -> dict[str, np.ndarray]:
    rs = np.random.RandomState(1717)
    out = {f"w0/{i}": rs.randn(*s).astype(d) for i, (s, d) in enumerate(zip(SHAPES, DTYPES))}
    for k in range(1, WARM + CONT + 1):
        for i, (s, d) in enumerate(zip(SHAPES, DTYPES)):
            out[f"g{k}/{i}"] = (0.5 * rs.randn(*s)).astype(d)
    return out


def written() -> tuple[bytes, dict[int, np.ndarray]]:
    """The states after WARM updates, as bytes, and the weights then."""
    import jax.numpy as jnp

    import mxjax as mx

    data = inputs()
    u = mx.optimizer.get_updater(mx.optimizer.Adam(**KWARGS))
    w = {i: jnp.asarray(data[f"w0/{i}"]) for i in range(len(SHAPES))}
    for k in range(1, WARM + 1):
        for i in w:
            w[i] = u(i, jnp.asarray(data[f"g{k}/{i}"]), w[i])
    return u.get_states(), {i: np.asarray(v) for i, v in w.items()}


if __name__ == "__main__":
    import pathlib

    out = pathlib.Path(__file__).resolve().parents[1] / "reference" / "states"
    raw, weights = written()
    (out / "mxjax_written.states").write_bytes(raw)
    np.savez(out / "mxjax_written_inputs.npz", **inputs(), **{f"w{WARM}/{i}": v for i, v in weights.items()})
