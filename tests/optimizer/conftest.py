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
NOT_FROZEN_BY_LR_MULT_0.update({
    "ftml": "FTML divides by the learning rate: lr = 0 gives NaN weights, as in MXNet",
    "ftrl": "FTRL divides by the learning rate: lr = 0 gives NaN weights, as in MXNet",
})
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
