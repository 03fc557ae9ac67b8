"""MXNet's optimizers as pure ``(init, update)`` pairs.

``create(name, **kwargs)`` looks a factory up by its MXNet registry name
(case-insensitive); ``register(name, factory)`` adds your own. MXNet's class names
(``SGD(momentum=0.9)``, ``Adam(...)``; ``contrib.GroupAdaGrad``) build the same
optimizers, ``Optimizer.create_optimizer`` is ``create``, ``get_updater`` is MXNet's
eager ``Updater``, and ``@Optimizer.register``
registers an MXNet-style subclass (``create_state``/``update``, see
:mod:`mxjax.optimizer._mxnet_compat`). See :func:`~mxjax.optimizer.from_rule` for
writing one from a per-leaf kernel.
"""

from .._names import leaf_names as leaf_names
from .._registry import Registry
from ._adabelief import adabelief as adabelief
from ._adadelta import adadelta as adadelta
from ._adagrad import adagrad as adagrad
from ._adam import adam as adam
from ._adamax import adamax as adamax
from ._adamw import adamw as adamw
from ._base import from_rule as from_rule
from ._base import jit_update as jit_update
from ._classes import NamedOptimizer as NamedOptimizer
from ._choose import AUTO_MIN_LEAVES as AUTO_MIN_LEAVES
from ._choose import layout_of as layout_of
from ._classes import named
from ._contract import Common as Common
from ._contract import Hyper as Hyper
from ._contract import Optimizer as Optimizer
from ._contract import OptState as OptState
from ._contract import PerLeaf as PerLeaf
from ._contract import Rule as Rule
from ._dcasgd import dcasgd as dcasgd
from ._ftml import ftml as ftml
from ._ftrl import ftrl as ftrl
from ._groupadagrad import groupadagrad as groupadagrad
from ._kernel_math import one_minus_pow as one_minus_pow
from ._kernel_math import rescale_clip as rescale_clip
from ._lamb import lamb as lamb
from ._lans import lans as lans
from ._lars import lars as lars
from ._lbsgd import lbsgd as lbsgd
from ._multi import MultiSlots as MultiSlots
from ._nadam import nadam as nadam
from ._nag import nag as nag
from ._packed import Packed as Packed
from ._rmsprop import rmsprop as rmsprop
from ._sgd import sgd as sgd
from ._sgld import sgld as sgld
from ._signum import signum as signum
from ._updater import Updater as Updater
from ._updater import get_updater as get_updater
from ._verify import FastPathFallbackWarning as FastPathFallbackWarning


def ccsgd(**kwargs):
    """MXNet's ``ccSGD``: a registered alias of :func:`sgd` with identical behaviour."""
    return sgd(**kwargs)


registry: Registry = Registry(
    "optimizer",
    {
        "sgd": sgd,
        "ccsgd": ccsgd,
        "nag": nag,
        "rmsprop": rmsprop,
        "adam": adam,
        "adagrad": adagrad,
        "adadelta": adadelta,
        "adamax": adamax,
        "nadam": nadam,
        "signum": signum,
        "ftml": ftml,
        "ftrl": ftrl,
        "dcasgd": dcasgd,
        "sgld": sgld,
        "groupadagrad": groupadagrad,
        "lars": lars,
        "lbsgd": lbsgd,
        "lamb": lamb,
        "adamw": adamw,
        "adabelief": adabelief,
        "lans": lans,
    },
)
create = registry.create
register = registry.register
names = registry.names

_M = __name__
SGD = named("SGD", sgd, _M)
ccSGD = named("ccSGD", ccsgd, _M)
NAG = named("NAG", nag, _M)
RMSProp = named("RMSProp", rmsprop, _M)
Adam = named("Adam", adam, _M)
AdaGrad = named("AdaGrad", adagrad, _M)
AdaDelta = named("AdaDelta", adadelta, _M)
Adamax = named("Adamax", adamax, _M)
Nadam = named("Nadam", nadam, _M)
DCASGD = named("DCASGD", dcasgd, _M)
SGLD = named("SGLD", sgld, _M)
Signum = named("Signum", signum, _M)
FTML = named("FTML", ftml, _M)
LBSGD = named("LBSGD", lbsgd, _M)
Ftrl = named("Ftrl", ftrl, _M)
LARS = named("LARS", lars, _M)
LAMB = named("LAMB", lamb, _M)
AdamW = named("AdamW", adamw, _M)
AdaBelief = named("AdaBelief", adabelief, _M)
LANS = named("LANS", lans, _M)

from . import contrib as contrib  # noqa: E402  (GroupAdaGrad, as MXNet's contrib)
