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

# zoo2: LARS, LBSGD, LAMB (MXNet 1.9.1) and AdamW, AdaBelief, LANS (MXNet 2.0).
# The trust-ratio optimizers (LARS, LAMB, LANS) take steps proportional to ||w||, which
# do not shrink near the optimum: they converge on the quadratic with a decaying lr.
CONVERGE["lars"] = dict(learning_rate=0.5, eta=1.0, eps=10.0)
CONVERGE["lbsgd"] = dict(learning_rate=0.1, momentum=0.5, batch_scale=2, warmup_epochs=1,
                         updates_per_epoch=4)
CONVERGE["lamb"] = dict(learning_rate=lambda n: 0.05 * 0.99**n)
CONVERGE["adamw"] = dict(learning_rate=0.05, wd=0.001)
CONVERGE["adabelief"] = dict(learning_rate=0.05)
CONVERGE["lans"] = dict(learning_rate=lambda n: 0.05 * 0.99**n)
