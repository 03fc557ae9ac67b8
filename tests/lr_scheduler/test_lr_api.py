"""Registry, jit/vmap/scan use, dtypes, user schedulers and the doctests."""

from __future__ import annotations

import dataclasses
import doctest

import jax
import jax.numpy as jnp
import mxnet_lr_oracle as oracle
import numpy as np
import pytest
from lr_cases import assert_close

from mxjax import lr_scheduler
from mxjax.lr_scheduler import _base, _cosine, _factor, _multifactor, _poly, _warmup

EXAMPLES = [
    ("FactorScheduler", {"step": 3, "factor": 0.5, "warmup_steps": 4}),
    ("MultiFactorScheduler", {"step": [2, 7], "factor": 0.3, "warmup_steps": 3}),
    ("PolyScheduler", {"max_update": 12, "pwr": 1.5, "warmup_steps": 2}),
    ("CosineScheduler", {"max_update": 12, "final_lr": 0.001, "warmup_steps": 2}),
]
IDS = [c for c, _ in EXAMPLES]
NS = list(range(0, 20))


def _mxnet(cls_name, kwargs):
    return oracle.run(cls_name, kwargs, NS)


def test_registry_names():
    assert lr_scheduler.names() == sorted(
        ["factor", "multifactor", "poly", "cosine", "factorscheduler",
         "multifactorscheduler", "polyscheduler", "cosinescheduler"]
    )


@pytest.mark.parametrize("cls_name,kwargs", EXAMPLES, ids=IDS)
def test_create_by_short_and_class_name(cls_name, kwargs):
    cls = getattr(lr_scheduler, cls_name)
    short = cls_name.removesuffix("Scheduler").lower()
    assert lr_scheduler.create(short, **kwargs) == cls(**kwargs)
    assert lr_scheduler.create(cls_name, **kwargs) == cls(**kwargs)


def test_create_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="multifactor"):
        lr_scheduler.create("step", step=3)


@pytest.mark.parametrize("cls_name,kwargs", EXAMPLES, ids=IDS)
def test_traced_count_in_scan_matches_mxnet(cls_name, kwargs):
    """Inside a jitted scan the count is a traced int32 scalar, as in an optimizer."""
    sched = getattr(lr_scheduler, cls_name)(**kwargs)

    def body(n, _):
        return n + 1, sched(n)

    _, lrs = jax.jit(lambda: jax.lax.scan(body, jnp.int32(0), length=len(NS)))()
    assert_close(lrs, _mxnet(cls_name, kwargs))


@pytest.mark.parametrize("cls_name,kwargs", EXAMPLES, ids=IDS)
def test_strict_dtype_promotion(cls_name, kwargs):
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    with jax.numpy_dtype_promotion("strict"):
        got = jax.jit(jax.vmap(sched))(jnp.asarray(NS, jnp.int32))
    assert_close(got, _mxnet(cls_name, kwargs))


def test_integer_kinds_and_arrays_of_counts():
    cls_name, kwargs = EXAMPLES[0]
    sched = getattr(lr_scheduler, cls_name)(**kwargs)
    want = _mxnet(cls_name, kwargs)
    for kind in (np.int64, np.uint8, jnp.int16):
        got = sched(kind(NS[5]))
        assert got.dtype == jnp.float32 and got.shape == ()
        assert_close(got, want[5])
    assert_close(sched(np.asarray(NS)), want)  # an array of counts works elementwise


@pytest.mark.parametrize("cls_name,kwargs", EXAMPLES, ids=IDS)
def test_schedulers_are_hashable_values(cls_name, kwargs):
    cls = getattr(lr_scheduler, cls_name)
    assert cls(**kwargs) == cls(**kwargs)
    assert hash(cls(**kwargs)) == hash(cls(**kwargs))
    assert cls(**kwargs) != cls(**kwargs).with_base_lr(0.5)
    assert isinstance(cls(**kwargs), lr_scheduler.LRScheduler)


def test_factor_decays_after_step_not_at_step():
    sched = lr_scheduler.FactorScheduler(step=5, factor=0.5, base_lr=1.0)
    assert float(sched(5)) == 1.0 and float(sched(6)) == 0.5
    assert float(sched(10)) == 0.5 and float(sched(11)) == 0.25


def test_base_class_call_is_abstract():
    with pytest.raises(NotImplementedError):
        lr_scheduler.LRScheduler()(1)


@dataclasses.dataclass(frozen=True)
class _Exp(lr_scheduler.LRScheduler):
    """A user scheduler: base_lr * rate**n after MXNet's warmup."""

    rate: float = 0.9

    def __call__(self, num_update):
        n = jnp.asarray(num_update, jnp.float32)
        return self.warmup(num_update, self.base_lr * jnp.float32(self.rate) ** n)


def test_user_subclass_gets_warmup_and_with_base_lr():
    sched = _Exp(base_lr=0.2, warmup_steps=5, warmup_begin_lr=0.05, rate=0.9)
    ref = oracle.LRScheduler(0.2, 5, 0.05)
    ns = np.arange(12)
    want = [ref.get_warmup_lr(n) if n < 5 else 0.2 * 0.9**n for n in ns]
    assert_close(jax.jit(jax.vmap(sched))(jnp.asarray(ns)), want)
    moved = sched.with_base_lr(0.4)
    want = [ref.get_warmup_lr(n) if n < 5 else 0.4 * 0.9**n for n in ns]
    assert_close(jax.vmap(moved)(jnp.asarray(ns)), want)
    with pytest.raises(ValueError, match="warmup_begin_lr"):
        _Exp(base_lr=0.1, warmup_begin_lr=0.2)


@pytest.mark.parametrize("mode", ["linear", "constant"])
def test_with_warmup_wraps_any_function(mode):
    ref = oracle.LRScheduler(0.3, 7, 0.02, mode)
    sched = lr_scheduler.with_warmup(
        lambda n: 0.3 / (1.0 + n.astype(jnp.float32)), 7, 0.3, 0.02, mode
    )
    ns = np.arange(15)
    want = [ref.get_warmup_lr(n) if n < 7 else 0.3 / (1.0 + n) for n in ns]
    assert_close(jax.jit(jax.vmap(sched))(jnp.asarray(ns)), want)


@pytest.mark.parametrize(
    "module",
    [lr_scheduler, _base, _warmup, _factor, _multifactor, _poly, _cosine],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if module not in (_base,):
        assert result.attempted > 0


@pytest.mark.parametrize("mode", ["linear", "constant"])
def test_get_warmup_lr_matches_mxnet_and_ignores_the_overwrite(mode):
    ref = oracle.LRScheduler(0.2, 9, 0.03, mode)
    sched = lr_scheduler.LRScheduler(0.2, 9, 0.03, mode).with_base_lr(0.7)
    ns = np.arange(9)
    assert_close(jax.vmap(sched.get_warmup_lr)(jnp.asarray(ns)),
                 [ref.get_warmup_lr(n) for n in ns])
