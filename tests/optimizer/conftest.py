"""Per-optimizer settings for the generic tests over every registered optimizer."""

from __future__ import annotations

# Keyword arguments under which each optimizer converges on a quadratic in the generic
# convergence test. Every registered optimizer needs an entry (the test fails otherwise).
CONVERGE = {
    "sgd": dict(learning_rate=0.1),
    "ccsgd": dict(learning_rate=0.1, momentum=0.5),
    "nag": dict(learning_rate=0.1, momentum=0.5),
    "rmsprop": dict(learning_rate=0.01),
    "adam": dict(learning_rate=0.05),
    "adagrad": dict(learning_rate=0.5),
    "adadelta": dict(rho=0.9, epsilon=1e-3),
    "adamax": dict(learning_rate=0.05),
    "nadam": dict(learning_rate=0.05),
}

# Optimizers for which a generic property does not hold, with the documented reason.
NOT_FROZEN_BY_LR_MULT_0 = {
    "adadelta": "MXNet's AdaDelta ignores the learning rate [Q23]",
}
NOT_RESCALE_INVARIANT: dict[str, str] = {}
