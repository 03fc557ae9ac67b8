"""MXNet's ``mx.optimizer.contrib``: ``GroupAdaGrad``."""

from ._classes import named
from ._groupadagrad import groupadagrad

GroupAdaGrad = named("GroupAdaGrad", groupadagrad, __name__)

__all__ = ["GroupAdaGrad"]
