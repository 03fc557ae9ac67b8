"""MXNet's initializers (``mx.init``) as ``jax.nn.initializers``-style initializers.

Every class is called as ``init(key, shape, dtype=jnp.float32)`` and applies its weight
rule, so it drops into flax (``nnx.Linear(..., kernel_init=Xavier(in_axis=-2,
out_axis=-1))``). :func:`init_params` initializes a pytree with MXNet's name dispatch.

>>> import jax, mxjax as mx
>>> params = mx.initializer.init_params(
...     mx.initializer.Xavier(), jax.random.key(0), {"fc": {"weight": (4, 3), "bias": (4,)}})
"""

from ._base import Initializer as Initializer
from ._base import NamedInit as NamedInit
from ._base import compute_fans as compute_fans
from ._base import name_rule as name_rule
from ._bilinear import Bilinear as Bilinear
from ._constant import Constant as Constant
from ._constant import One as One
from ._constant import Zero as Zero
from ._create import create as create
from ._create import register as register
from ._load import Load as Load
from ._mixed import Mixed as Mixed
from ._orthogonal import Orthogonal as Orthogonal
from ._params import init_params as init_params
from ._random import Normal as Normal
from ._random import Uniform as Uniform
from ._rnn import FusedRNN as FusedRNN
from ._rnn import LSTMBias as LSTMBias
from ._xavier import MSRAPrelu as MSRAPrelu
from ._xavier import Xavier as Xavier

__all__ = [
    "Bilinear",
    "Constant",
    "FusedRNN",
    "Initializer",
    "LSTMBias",
    "Load",
    "MSRAPrelu",
    "Mixed",
    "NamedInit",
    "Normal",
    "One",
    "Orthogonal",
    "Uniform",
    "Xavier",
    "Zero",
    "compute_fans",
    "create",
    "init_params",
    "name_rule",
    "register",
]
