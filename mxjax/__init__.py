"""mxjax: Apache MXNet's optimizers, initializers and lr schedulers, in pure JAX.

>>> import mxjax as mx
>>> opt = mx.optimizer.create("adam", learning_rate=0.01)
"""

from . import adapters as adapters
from . import checkpoint as checkpoint
from . import initializer as initializer
from . import lr_scheduler as lr_scheduler
from . import nd as nd
from . import optimizer as optimizer
from . import training as training
from .training import fit as fit

__version__ = "0.1.0"
