"""MXNet's learning-rate schedulers as pure ``num_update -> lr`` functions.

Each scheduler is an immutable object with MXNet's class name, arguments and
defaults; calling it with MXNet's update count ``num_update`` (1 on the first
update, a Python int or an integer array, traced or not) returns the lr as a float32
``jax.Array``. It is a closed-form ``jnp`` function of ``num_update``, so it works
under ``jit`` and ``vmap`` and gives MXNet's stateful sequence for any non-decreasing
sequence of calls (MXNet's objects never go back for a smaller ``num_update``; these
do, [Q34]).

>>> import jax, jax.numpy as jnp
>>> from mxjax import lr_scheduler
>>> s = lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.1)
>>> [round(float(x), 6) for x in jax.jit(jax.vmap(s))(jnp.arange(1, 6))]
[0.1, 0.1, 0.05, 0.05, 0.025]
>>> lr_scheduler.create("cosine", max_update=100).base_lr
0.01

**Your own scheduler.** Anything that maps ``num_update`` to an lr with ``jnp`` is a
schedule (``learning_rate=`` or ``lr_scheduler=`` of an optimizer):

>>> def exp_decay(num_update):
...     return 0.1 * jnp.exp(-0.01 * num_update)

:func:`with_warmup` puts MXNet's warmup in front of it:

>>> s = lr_scheduler.with_warmup(exp_decay, warmup_steps=10, warmup_final_lr=0.1)
>>> round(float(s(5)), 6)
0.05

To get ``base_lr`` and ``with_base_lr`` as well (the optimizer's ``learning_rate``
overrides a scheduler's ``base_lr``, as in MXNet [Q1]), subclass :class:`LRScheduler`
as a frozen dataclass and implement ``__call__``, wrapping the decay in
``self.warmup``:

>>> import dataclasses
>>> @dataclasses.dataclass(frozen=True)
... class ExpScheduler(lr_scheduler.LRScheduler):
...     rate: float = 0.01
...     def __call__(self, num_update):
...         n = jnp.asarray(num_update, jnp.float32)
...         return self.warmup(num_update, self.base_lr * jnp.exp(-self.rate * n))
>>> s = ExpScheduler(base_lr=0.1, warmup_steps=10, rate=0.01)
>>> round(float(s(5)), 6), round(float(s.with_base_lr(0.2)(10)), 6)
(0.05, 0.180967)

:func:`create` builds a scheduler by name (``factor``, ``multifactor``, ``poly``,
``cosine`` or the lower-cased class name), e.g. from a command line.
"""

from .._registry import Registry
from ._base import LRScheduler as LRScheduler
from ._cosine import CosineScheduler as CosineScheduler
from ._factor import FactorScheduler as FactorScheduler
from ._multifactor import MultiFactorScheduler as MultiFactorScheduler
from ._poly import PolyScheduler as PolyScheduler
from ._warmup import with_warmup as with_warmup

registry: Registry = Registry(
    "lr_scheduler",
    {
        "factor": FactorScheduler,
        "multifactor": MultiFactorScheduler,
        "poly": PolyScheduler,
        "cosine": CosineScheduler,
        "factorscheduler": FactorScheduler,
        "multifactorscheduler": MultiFactorScheduler,
        "polyscheduler": PolyScheduler,
        "cosinescheduler": CosineScheduler,
    },
)
create = registry.create
register = registry.register
names = registry.names

