"""Every construction-time rule raises ValueError naming the argument and the value."""

from __future__ import annotations

import pytest

from mxjax.lr_scheduler import (
    CosineScheduler,
    FactorScheduler,
    LRScheduler,
    MultiFactorScheduler,
    PolyScheduler,
    with_warmup,
)

BUILDERS = {
    "factor": lambda **kw: FactorScheduler(**{"step": 3, **kw}),
    "multifactor": lambda **kw: MultiFactorScheduler(**{"step": [3, 5], **kw}),
    "poly": lambda **kw: PolyScheduler(**{"max_update": 20, **kw}),
    "cosine": lambda **kw: CosineScheduler(**{"max_update": 20, **kw}),
    "base": lambda **kw: LRScheduler(**kw),
}

# (builders, argument, bad values, a good value)
RULES = [
    (["factor"], "step", [0, -2, 2.5, 3.0, True, None], 1),
    (["factor", "multifactor"], "factor", [0, -0.5, 1.5, float("nan")], 1),
    (["factor"], "stop_factor_lr", [-1e-8, float("nan")], 0),
    (["poly", "cosine"], "max_update", [0, -3, 20.0, "20"], 1),
    (["poly"], "pwr", [0, -1.0, float("nan")], 0.5),
    (["poly", "cosine"], "final_lr", [-0.01], 0.02),
    (list(BUILDERS), "base_lr", [-0.1, float("nan"), "0.1"], 0),
    (list(BUILDERS), "warmup_steps", [-1, 2.0, 1.5, None], 0),
    (list(BUILDERS), "warmup_begin_lr", [0.011, -0.001], 0.01),
    (list(BUILDERS), "warmup_mode", ["cosine", "Linear", None], "constant"),
]
PARAMS = [
    pytest.param(b, arg, bads, good, id=f"{b}-{arg}")
    for builders, arg, bads, good in RULES
    for b in builders
]


INT_ARGS = {"step", "max_update", "warmup_steps"}


def error_for(arg: str, bad: object) -> type[Exception]:
    """TypeError for a value of the wrong type, ValueError for a wrong value."""
    if arg == "warmup_mode":
        return ValueError if isinstance(bad, str) else TypeError
    if isinstance(bad, (str, bool, type(None))):
        return TypeError
    return TypeError if arg in INT_ARGS and isinstance(bad, float) else ValueError


@pytest.mark.parametrize("builder,arg,bads,good", PARAMS)
def test_bad_argument_raises_an_error_naming_it(builder, arg, bads, good):
    build = BUILDERS[builder]
    build(**{arg: good})  # the good value passes: the failure below is the rule's
    for bad in bads:
        with pytest.raises(error_for(arg, bad), match=arg) as err:
            build(**{arg: bad})
        assert repr(bad) in str(err.value)


@pytest.mark.parametrize(
    "step,exc",
    [
        ([], ValueError),
        ([0, 3], ValueError),
        ([3, 3], ValueError),
        ([5, 3], ValueError),
        ((3, 2), ValueError),
        ([2, 4.5], TypeError),
        ("3", TypeError),
        (None, TypeError),
        (3, TypeError),
    ],
)
def test_multifactor_steps_must_be_increasing_ints_from_one(step, exc):
    MultiFactorScheduler(step=[1, 2])
    with pytest.raises(exc, match=r"step"):
        MultiFactorScheduler(step=step)


@pytest.mark.parametrize("cls", [PolyScheduler, CosineScheduler])
@pytest.mark.parametrize("max_update,warmup_steps", [(5, 5), (3, 5), (1, 1)])
def test_max_update_must_exceed_warmup_steps_q37(cls, max_update, warmup_steps):
    cls(max_update=warmup_steps + 1, warmup_steps=warmup_steps)
    with pytest.raises(ValueError, match="max_update") as err:
        cls(max_update=max_update, warmup_steps=warmup_steps)
    assert "warmup_steps" in str(err.value)


def test_warmup_begin_lr_may_equal_base_lr():
    FactorScheduler(step=2, base_lr=0.1, warmup_begin_lr=0.1, warmup_steps=3)


@pytest.mark.parametrize("cls", [FactorScheduler, PolyScheduler])
def test_with_base_lr_rejects_negative(cls):
    sched = cls(3)
    with pytest.raises(ValueError, match="base_lr"):
        sched.with_base_lr(-0.1)


def test_with_warmup_validates_like_the_schedulers():
    with pytest.raises(ValueError, match="warmup_steps"):
        with_warmup(lambda n: n, warmup_steps=-1, warmup_final_lr=0.1)
    with pytest.raises(ValueError, match="warmup_begin_lr"):
        with_warmup(lambda n: n, 3, warmup_final_lr=0.1, warmup_begin_lr=0.2)
    with pytest.raises(ValueError, match="warmup_mode"):
        with_warmup(lambda n: n, 3, warmup_final_lr=0.1, warmup_mode="exp")


def test_float_num_update_is_a_type_error():
    with pytest.raises(TypeError, match="num_update"):
        FactorScheduler(step=2)(1.5)
