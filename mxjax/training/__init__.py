"""A small training loop (MXNet's ``Module.fit``) and the seed's task on real data.

>>> import jax, mxjax as mx
>>> from mxjax import training
>>> data = training.load_digits()
>>> params = mx.initializer.init_params(
...     mx.initializer.Uniform(1.0), jax.random.key(0), training.mlp_shapes())
>>> opt = mx.optimizer.create("sgd", learning_rate=0.1, rescale_grad=1 / 128)
>>> params, state, history = mx.fit(
...     training.softmax_loss, params,
...     training.batch_iterator(data.x_train, data.y_train, 128), opt,
...     num_epoch=2, has_aux=True)
>>> history.steps
24
"""

from ._digits import Split as Split
from ._digits import accuracy as accuracy
from ._digits import batch_iterator as batch_iterator
from ._digits import load_digits as load_digits
from ._digits import mlp_apply as mlp_apply
from ._digits import mlp_shapes as mlp_shapes
from ._digits import softmax_loss as softmax_loss
from ._digits import steps_per_epoch as steps_per_epoch
from ._fit import FitResult as FitResult
from ._fit import History as History
from ._fit import Interrupted as Interrupted
from ._fit import fit as fit
from ._fit import format_table as format_table
from ._fit import learning_rate_at as learning_rate_at
from ._fit import lr_schedule as lr_schedule

__all__ = [
    "FitResult",
    "History",
    "Interrupted",
    "Split",
    "accuracy",
    "batch_iterator",
    "fit",
    "format_table",
    "learning_rate_at",
    "load_digits",
    "lr_schedule",
    "mlp_apply",
    "mlp_shapes",
    "softmax_loss",
    "steps_per_epoch",
]
