"""Per-optimizer settings for the generic tests over every registered optimizer."""

from __future__ import annotations

import jax

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
    "signum": dict(learning_rate=0.01),
    "ftml": dict(learning_rate=0.05),
    "ftrl": dict(learning_rate=1.0, lamda1=0.0),
    "dcasgd": dict(learning_rate=0.1),
    # a sharp posterior: SGLD samples exp(-rescale_grad * loss), variance ~1e-4 here
    "sgld": dict(learning_rate=1e-4, rescale_grad=1e4),
    "groupadagrad": dict(learning_rate=0.5),
}

# Optimizers for which a generic property does not hold, with the documented reason.
NOT_FROZEN_BY_LR_MULT_0 = {
    "adadelta": "MXNet's AdaDelta ignores the learning rate [Q23]",
}
NOT_RESCALE_INVARIANT: dict[str, str] = {}
NOT_FROZEN_BY_LR_MULT_0.update(
    {
        "ftml": "FTML divides by the learning rate: lr = 0 gives NaN weights, as in MXNet",
        "ftrl": "FTRL divides by the learning rate: lr = 0 gives NaN weights, as in MXNet",
    }
)
# Optimizers whose MXNet class accepts only 2-D weights: the generic tests give them
# their parameters as 2-D arrays (1-D leaves become one row).
TWO_D_ONLY = {"groupadagrad": "MXNet's GroupAdaGrad asserts 2-D weights"}
# Optimizers that refuse weight decay: the generic tests run them with wd = 0.
NO_WEIGHT_DECAY = {"groupadagrad": "MXNet's GroupAdaGrad asserts wd == 0"}
# Optimizers whose update is random: their recordings hold MXNet's trajectory with the
# noise removed, and test_<name>.py replays them with mxjax's noise removed.
RANDOM = {"sgld": "Gaussian noise from MXNet's global RNG cannot be reproduced [Q13]"}


def shaped(name, tree):
    """``tree`` as optimizer ``name`` accepts it: 1-D leaves become columns ``(n, 1)``
    for the ``TWO_D_ONLY`` optimizers; other trees are returned unchanged."""
    if name not in TWO_D_ONLY:
        return tree
    return jax.tree.map(lambda x: x.reshape(-1, 1) if x.ndim == 1 else x, tree)


def wd_for(name, wd):
    """The weight decay a generic test may use with optimizer ``name``."""
    return 0.0 if name in NO_WEIGHT_DECAY else wd
