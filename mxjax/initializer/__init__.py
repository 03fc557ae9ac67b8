"""MXNet's initializers as ``jax.nn.initializers``-style functions (see issue: initializers)."""
