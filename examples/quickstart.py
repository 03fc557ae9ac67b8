"""A short training loop: softmax regression on synthetic data with an MXNet optimizer.

Run: ``python examples/quickstart.py [optimizer-name]``.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

import mxjax as mx


def main(name: str = "sgd") -> None:
    kx, kw, kn = jax.random.split(jax.random.key(0), 3)
    true_w = jax.random.normal(kw, (20, 10))
    x = jax.random.normal(kx, (1024, 20))
    y = jnp.argmax(x @ true_w + 0.1 * jax.random.normal(kn, (1024, 10)), axis=1)
    params = {"fc_weight": jnp.zeros((20, 10)), "fc_bias": jnp.zeros(10)}

    def loss_fn(p, xb, yb):
        logits = xb @ p["fc_weight"] + p["fc_bias"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(yb)), yb])

    opt = mx.optimizer.create(name, learning_rate=0.1, rescale_grad=1.0)
    state = opt.init(params)

    @jax.jit
    def step(p, s, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        p, s = opt.update(g, s, p)
        return p, s, loss

    for epoch in range(5):
        for i in range(0, 1024, 128):
            params, state, loss = step(params, state, x[i : i + 128], y[i : i + 128])
        acc = jnp.mean(jnp.argmax(x @ params["fc_weight"] + params["fc_bias"], 1) == y)
        print(f"epoch {epoch}  loss {float(loss):.4f}  accuracy {float(acc):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
