"""Three of MXNet 1.9.1's own Python optimizer classes, ported the way a user would.

The code is MXNet's (``mxnet/optimizer/optimizer.py``, classes ``Adamax``, ``Nadam`` and
``DCASGD``), line for line, with three mechanical changes:

* NDArray calls become ``jnp`` (``zeros(shape, ctx, dtype)`` -> ``jnp.zeros(shape,
  dtype)``, ``clip``/``maximum``/``NDabs`` -> ``jnp.clip``/``jnp.maximum``/``jnp.abs``),
* in-place writes (``m_t[:] *= b``, ``weight[:] -= d``) become new values,
* ``update`` returns ``(new_weight, new_state)``.

``tests/migration/test_mxnet_api.py`` checks each against the built-in optimizers and
against MXNet's recorded trajectories. The classes are registered under new names
(``ported_adamax``, ``ported_dcasgd``, ``ported_nadam``) so they do not replace the
built-ins. Nadam shows ``global_states``: the attribute MXNet rebinds in ``update``.
"""

from __future__ import annotations

import jax.numpy as jnp

import mxjax as mx


@mx.optimizer.Optimizer.register
class Ported_Adamax(mx.optimizer.Optimizer):  # noqa: N801 - MXNet registers lower-case
    """MXNet 1.9.1's ``Adamax``."""

    def __init__(self, learning_rate=0.002, beta1=0.9, beta2=0.999, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2

    def create_state(self, index, weight):
        return (jnp.zeros(weight.shape, dtype=weight.dtype),  # mean
                jnp.zeros(weight.shape, dtype=weight.dtype))  # variance

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        wd = self._get_wd(index)

        t = self._index_update_count[index]
        lr /= (1. - self.beta1**t)

        # preprocess grad
        grad = grad * self.rescale_grad + wd * weight
        if self.clip_gradient is not None:
            grad = jnp.clip(grad, -self.clip_gradient, self.clip_gradient)

        # update m_t and u_t
        m_t, u_t = state
        m_t = m_t * self.beta1
        m_t = m_t + (1. - self.beta1) * grad
        u_t = jnp.maximum(self.beta2 * u_t, jnp.abs(grad))

        # update weight
        weight = weight - lr * m_t / u_t
        return weight, (m_t, u_t)


@mx.optimizer.Optimizer.register
class Ported_DCASGD(mx.optimizer.Optimizer):  # noqa: N801
    """MXNet 1.9.1's ``DCASGD``."""

    def __init__(self, momentum=0.0, lamda=0.04, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.weight_previous = {}
        self.lamda = lamda

    def create_state(self, index, weight):
        if self.momentum == 0.0:
            return (None,
                    jnp.array(weight, copy=True))  # previous weight
        else:
            return (jnp.zeros(weight.shape, dtype=weight.dtype),  # momentum
                    jnp.array(weight, copy=True))  # previous weight

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        wd = self._get_wd(index)

        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = jnp.clip(grad, -self.clip_gradient, self.clip_gradient)

        mom, previous_weight = state
        if mom is not None:  # MXNet: `if mom:`, which raises for a multi-element mom
            mom = mom * self.momentum
            mom = mom + -lr * (grad + wd * weight + self.lamda
                               * grad * grad * (weight - previous_weight))
        else:
            assert self.momentum == 0.0
            mom = -lr * (grad + wd * weight + self.lamda
                         * grad * grad * (weight - previous_weight))
        previous_weight = weight
        weight = weight + mom
        return weight, (mom if self.momentum != 0.0 else None, previous_weight)


@mx.optimizer.Optimizer.register
class Ported_Nadam(mx.optimizer.Optimizer):  # noqa: N801
    """MXNet 1.9.1's ``Nadam``: its ``m_schedule`` is optimizer-global state, declared in
    ``global_states`` so mxjax carries it in ``state.extra``."""

    global_states = ("m_schedule",)

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 schedule_decay=0.004, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule_decay = schedule_decay
        self.m_schedule = 1.

    def create_state(self, index, weight):
        return (jnp.zeros(weight.shape, dtype=weight.dtype),  # mean
                jnp.zeros(weight.shape, dtype=weight.dtype))  # variance

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        wd = self._get_wd(index)

        t = self._index_update_count[index]

        # preprocess grad
        grad = grad * self.rescale_grad + wd * weight
        if self.clip_gradient is not None:
            grad = jnp.clip(grad, -self.clip_gradient, self.clip_gradient)

        # warming momentum schedule
        momentum_t = self.beta1 * (1. - 0.5 * (pow(0.96, t * self.schedule_decay)))
        momentum_t_1 = self.beta1 * (1. - 0.5 * (pow(0.96, (t + 1) * self.schedule_decay)))
        self.m_schedule = self.m_schedule * momentum_t
        m_schedule_next = self.m_schedule * momentum_t_1

        # update m_t and v_t
        m_t, v_t = state
        m_t = m_t * self.beta1
        m_t = m_t + (1. - self.beta1) * grad
        v_t = v_t * self.beta2
        v_t = v_t + (1. - self.beta2) * grad * grad

        grad_prime = grad / (1. - self.m_schedule)
        m_t_prime = m_t / (1. - m_schedule_next)
        v_t_prime = v_t / (1. - pow(self.beta2, t))
        m_t_bar = (1. - momentum_t) * grad_prime + momentum_t_1 * m_t_prime

        # update weight
        weight = weight - lr * m_t_bar / (jnp.sqrt(v_t_prime) + self.epsilon)
        return weight, (m_t, v_t)
