"""docs/validation.md is the spec: every row is a rule, tested here with bad values
generated from the rule (hypothesis) plus the row's extra ones, so the doc cannot drift.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxjax as mx
from mxjax import initializer as I
from mxjax import lr_scheduler as L
from mxjax.optimizer._contract import Common
from tests.helpers import ROOT

DOC = ROOT / "docs" / "validation.md"
FUZZ = settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# How to build a valid component (required arguments only); the rule under test is the
# one argument the test overrides. Valid construction is asserted below.
SCHED_BASE: dict[str, dict[str, Any]] = {
    "factor": {"step": 3},
    "multifactor": {"step": [3, 5]},
    "poly": {"max_update": 20},
    "cosine": {"max_update": 20},
    "LRScheduler": {},
    "with_warmup": {
        "schedule": lambda n: 0.1,
        "warmup_steps": 4,
        "warmup_final_lr": 0.1,
    },
}
INIT_BASE: dict[str, dict[str, Any]] = {
    "Constant": {"value": 1.0},
    "FusedRNN": {"init": I.Uniform(), "num_hidden": 2, "num_layers": 1, "mode": "lstm"},
    "Load": {"param": {"fc_weight": [1.0]}},
    "Mixed": {"patterns": [".*"], "initializers": [I.Uniform()]},
}
INIT_CLASSES = sorted(
    n
    for n in I.__all__
    if inspect.isclass(getattr(I, n))
    and n not in ("Initializer", "NamedInit")  # an abstract base and a Protocol
)
SCHEDULERS = {  # registry name -> factory, one name per class (aliases dropped)
    n: L.registry.get(n) for n in L.names() if not n.endswith("scheduler")
}


def build(component: str, **kwargs: Any) -> Any:
    kind, name = component.split(".", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "optimizer":
            return mx.optimizer.create(name, **kwargs)
        if kind == "lr_scheduler":
            base = SCHED_BASE[name]
            if name == "with_warmup":
                return L.with_warmup(**{**base, **kwargs})
            if name == "LRScheduler":
                return L.LRScheduler(**kwargs)
            return SCHEDULERS[name](**{**base, **kwargs})
        return getattr(I, name)(**{**INIT_BASE.get(name, {}), **kwargs})


def public_args(component: str) -> list[str]:
    kind, name = component.split(".", 1)
    if kind == "optimizer":
        fn = mx.optimizer.registry.get(name)
        extra = list(Common.__annotations__)
    elif kind == "lr_scheduler":
        fn = {"with_warmup": L.with_warmup, "LRScheduler": L.LRScheduler}.get(
            name, SCHEDULERS.get(name)
        )
        extra = []
    else:
        fn, extra = getattr(I, name), []
    sig = inspect.signature(fn)
    own = [
        p.name
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return own + [e for e in extra if e not in own]


def default_of(component: str, arg: str) -> Any:
    kind, name = component.split(".", 1)
    base = SCHED_BASE.get(name, {}) if kind == "lr_scheduler" else {}
    if arg in base:
        return base[arg]
    fn = L.LRScheduler if name == "LRScheduler" else SCHEDULERS.get(name, L.with_warmup)
    return inspect.signature(fn).parameters[arg].default


# ------------------------------------------------------------------- parsing the doc


@dataclasses.dataclass(frozen=True)
class Row:
    components: tuple[str, ...]
    arg: str
    rule: str
    error: str
    extra: str
    line: int

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.components[0]}-{self.arg}"


def parse_doc() -> list[Row]:
    rows = []
    for n, line in enumerate(DOC.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not re.match(
            r"(optimizer|lr_scheduler|initializer)\.", cells[0]
        ):
            continue
        comps = tuple(c.strip() for c in cells[0].split(","))
        rows.append(Row(comps, cells[1], cells[2], cells[3], cells[4], n))
    return rows


ROWS = parse_doc()


def expand(row: Row) -> list[str]:
    """The concrete components of a row (``*``: those without their own row)."""
    out = []
    for comp in row.components:
        kind, name = comp.split(".", 1)
        if name != "*":
            out.append(comp)
            continue
        every = (
            [f"optimizer.{n}" for n in mx.optimizer.names()]
            if kind == "optimizer"
            else [f"lr_scheduler.{n}" for n in [*SCHEDULERS, "LRScheduler"]]
        )
        own = {
            c for r in ROWS if r.arg == row.arg and r is not row for c in r.components
        }
        out += [c for c in every if c not in own]
    return out


NAMESPACE = {"nan": math.nan, "inf": math.inf, "Zero": I.Zero(), "__builtins__": {}}


def extra_values(row: Row) -> list[tuple[dict[str, Any], Any]]:
    """``(kwargs, bad value or None)`` for each extra bad value of the row."""
    out = []
    for text in filter(None, (t.strip() for t in row.extra.split(";"))):
        if text.startswith("**"):
            out.append((eval(text[2:], NAMESPACE), None))  # noqa: S307 - our own doc
        else:
            v = eval(text, NAMESPACE)  # noqa: S307
            out.append(({row.arg: v}, v))
    return out


@dataclasses.dataclass(frozen=True)
class Rule:
    kind: str  # real, int, bool, choice, callable, extra, unconstrained
    lo: Any = None
    hi: Any = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    none_ok: bool = False


def parse_rule(text: str) -> Rule:
    none_ok = text.endswith(" or None")
    text = text.removesuffix(" or None")
    m = re.fullmatch(r"(real|int) in ([\[(])\s*([^,]+),\s*([^\])]+)([\])])", text)
    if m:
        kind, lb, lo, hi, rb = m.groups()
        return Rule(kind, lo.strip(), hi.strip(), lb == "(", rb == ")", none_ok=none_ok)
    if text == "bool":
        return Rule("bool", none_ok=none_ok)
    if text == "callable":
        return Rule("callable", none_ok=none_ok)
    if text.startswith("one of "):
        return Rule(
            "choice", choices=tuple(re.findall(r'"([^"]*)"', text)), none_ok=none_ok
        )
    if text == "see extra":
        return Rule("extra")
    if text == "unconstrained":
        return Rule("unconstrained")
    raise AssertionError(f"unparsable rule {text!r} in docs/validation.md")


def bound(value: str, component: str) -> float:
    if re.fullmatch(r"[-+]?[0-9]+", value):
        return int(value)  # exact, even beyond 2**53
    if re.fullmatch(r"[-+]?(inf|[0-9.e+-]+)", value):
        return float(value)
    return float(default_of(component, value))  # a bound naming another argument


def inside(x: float, r: Rule, lo: float, hi: float) -> bool:
    if isinstance(x, float) and not math.isfinite(x):
        return False
    return (x > lo if r.lo_open else x >= lo) and (x < hi if r.hi_open else x <= hi)


def violations(r: Rule, component: str) -> st.SearchStrategy:
    """Values that break rule ``r``, tagged ``"range"`` or ``"type"``."""
    wrong_type = st.one_of(
        st.text(max_size=5),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.just(object()),
    )
    if not r.none_ok:
        wrong_type = st.one_of(wrong_type, st.none())
    if r.kind in ("real", "int"):
        lo, hi = bound(r.lo, component), bound(r.hi, component)
        out = st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300]),
        )
        if r.kind == "int":  # any float is the wrong type; ints outside the range
            ints = st.integers(max_value=int(lo) - 1 if math.isfinite(lo) else -(2**80))
            if math.isfinite(hi):
                ints = st.one_of(ints, st.integers(min_value=int(hi) + 1))
            return st.one_of(
                ints.map(lambda v: ("range", v)),
                out.map(lambda v: ("type", v)),
                wrong_type.map(lambda v: ("type", v)),
            )
        # an int beyond float range (10**400) is tried too, except on optimizers:
        # see test_optimizer_refuses_an_int_beyond_float_range
        huge = (
            st.just(10**400) if not component.startswith("optimizer.") else st.nothing()
        )
        ranged = st.one_of(out, st.integers(-(10**20), 10**20), huge).filter(
            lambda v: not inside(v, r, lo, hi) or v == 10**400
        )
        return st.one_of(
            ranged.map(lambda v: ("range", v)), wrong_type.map(lambda v: ("type", v))
        )
    if r.kind == "bool":
        return (
            st.one_of(
                st.sampled_from([0, 1, 0.0, 1.0, "True", "", None]),
                st.integers(),
                st.text(),
            )
            .filter(lambda v: not (v is None and r.none_ok))
            .map(lambda v: ("type", v))
        )
    if r.kind == "choice":
        strings = st.one_of(
            st.text(max_size=8),
            st.sampled_from([c.upper() for c in r.choices] + [" linear"]),
        ).filter(lambda v: v not in r.choices)
        return st.one_of(
            strings.map(lambda v: ("range", v)),
            st.one_of(st.integers(), st.none(), st.booleans()).map(
                lambda v: ("type", v)
            ),
        )
    if r.kind == "callable":
        return wrong_type.filter(lambda v: not callable(v)).map(lambda v: ("type", v))
    raise AssertionError(r)


def valid_value(r: Rule, component: str) -> Any:
    if r.kind in ("real", "int"):
        lo, hi = bound(r.lo, component), bound(r.hi, component)
        for x in (lo, 0, 1, lo + 1, hi, (lo + hi) / 2, hi - 1, lo + 0.5, lo + 1e-3):
            if inside(x, r, lo, hi) and (r.kind == "real" or float(x).is_integer()):
                return int(x) if r.kind == "int" else float(x)
        raise AssertionError(f"no valid value for {r}")
    return {"bool": True, "choice": r.choices[0] if r.choices else None}.get(
        r.kind, lambda n: 0.1
    )


def expected(error: str, why: str) -> type[Exception]:
    if error == "ValueError/TypeError":
        return TypeError if why == "type" else ValueError
    return {"ValueError": ValueError, "TypeError": TypeError}[error]


def why_of(r: Rule, value: Any) -> str:
    """Whether an extra bad value breaks the rule's range or its type."""
    if r.kind == "choice":
        return "range" if isinstance(value, str) else "type"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "type"
    return "type" if r.kind == "int" and isinstance(value, float) else "range"


def canonical(r: Rule, component: str) -> list[tuple[str, Any]]:
    """A fixed set of violations tried on every component of a row."""
    if r.kind in ("real", "int"):
        lo, hi = bound(r.lo, component), bound(r.hi, component)
        out = [("type", "0.5"), ("type", True)]
        out += [] if r.none_ok else [("type", None)]
        if r.kind == "real":
            out += [("range", math.nan), ("range", math.inf), ("range", -math.inf)]
            # inside the interval in float64, but not in float32 (the rule's float32 part)
            f32 = [1e39, -1e39, 1e-39, -1e-39, 1e-50]
            if math.isfinite(hi) and r.hi_open:
                f32.append(math.nextafter(float(hi), -math.inf))  # rounds up to hi
            out += [("range", v) for v in f32 if inside(v, r, lo, hi)]
        else:
            out += [("type", 1.5), ("type", 2.0)]
        if isinstance(lo, int) or math.isfinite(lo):
            out.append(
                (
                    "range",
                    lo - 1
                    if r.kind == "int"
                    else (lo if r.lo_open else lo - max(1.0, abs(lo))),
                )
            )
        if isinstance(hi, int) or math.isfinite(hi):
            out.append(
                (
                    "range",
                    hi + 1
                    if r.kind == "int"
                    else (hi if r.hi_open else hi + max(1.0, abs(hi))),
                )
            )
        return out
    if r.kind == "bool":
        return [("type", 1), ("type", 0), ("type", "yes")] + (
            [] if r.none_ok else [("type", None)]
        )
    if r.kind == "choice":
        return [("range", "NOPE"), ("range", r.choices[0].upper()), ("type", None)]
    if r.kind == "callable":
        return [("type", 0.1), ("type", "cosine")] + (
            [] if r.none_ok else [("type", None)]
        )
    return []


def check_refused(
    component: str,
    row: Row,
    kwargs: dict[str, Any],
    value: Any,
    why: str,
    rule: str | None = None,
):
    exc = expected(row.error, why)
    try:
        build(component, **kwargs)
    except (ValueError, TypeError) as e:
        assert isinstance(e, exc), (
            f"{component}({kwargs!r}) raised {type(e).__name__}, "
            f"docs say {exc.__name__}: {e}"
        )
        assert row.arg in str(e), f"{component}: message does not name {row.arg}: {e}"
        if rule is not None:  # the one message format, the rule as the doc writes it
            assert f" must be {rule}, got " in str(e), (
                f"{component}: message does not state the rule {rule!r}: {e}"
            )
        if (
            why in ("range", "type")
            and isinstance(value, (int, float, str))
            and not (isinstance(value, int) and abs(value) > 10**30)
        ):
            assert repr(value) in str(e), (
                f"{component}: message does not show {value!r}: {e}"
            )
    else:
        raise AssertionError(f"{component}({kwargs!r}) was accepted; docs: {row.rule}")


# --------------------------------------------------------------------------- the tests

TESTED = [r for r in ROWS if r.rule != "unconstrained"]


def test_the_doc_has_rules():
    assert len(TESTED) > 80
    for r in ROWS:
        parse_rule(r.rule)
        assert r.error in ("ValueError", "TypeError", "ValueError/TypeError", "")


@pytest.mark.parametrize("row", TESTED, ids=[r.id for r in TESTED])
def test_rule(row: Row):
    rule = parse_rule(row.rule)
    comps = expand(row)
    assert comps, row
    for comp in comps:
        build(comp)  # the base construction is valid
        if rule.kind not in ("extra",):
            build(
                comp, **{row.arg: valid_value(rule, comp)}
            )  # the rule is not stricter
            if rule.none_ok:
                build(comp, **{row.arg: None})
        for kwargs, value in extra_values(row):
            cross = set(kwargs) != {row.arg}  # a cross-argument rule: a range error
            check_refused(
                comp, row, kwargs, value, "range" if cross else why_of(rule, value)
            )
        for why, bad in canonical(rule, comp):
            check_refused(comp, row, {row.arg: bad}, bad, why, row.rule)
    if rule.kind == "extra":
        assert row.extra, f"{row.id}: a 'see extra' rule needs bad values"
        return

    @FUZZ
    @given(comp=st.sampled_from(comps), data=st.data())
    def fuzz(comp, data):
        why, bad = data.draw(violations(rule, comp))
        check_refused(comp, row, {row.arg: bad}, bad, why, row.rule)

    fuzz()


def components() -> list[str]:
    return (
        [f"optimizer.{n}" for n in mx.optimizer.names()]
        + [f"lr_scheduler.{n}" for n in [*SCHEDULERS, "LRScheduler", "with_warmup"]]
        + [f"initializer.{n}" for n in INIT_CLASSES]
    )


@pytest.mark.parametrize("component", components())
def test_every_public_argument_is_in_the_table(component):
    covered = set()
    for r in ROWS:
        if component in expand(r):
            covered.add(r.arg)
    args = public_args(component)
    if component == "optimizer.ccsgd":  # an alias taking sgd's arguments as **kwargs
        args = public_args("optimizer.sgd")
    missing = [a for a in args if a not in covered]
    assert not missing, (
        f"{component}: arguments missing from docs/validation.md: {missing}"
    )
    if not args:  # no arguments: the table says so
        assert any(
            component in r.components and r.rule == "unconstrained" for r in ROWS
        )
    stale = [a for a in covered if a not in args and a != "(none)"]
    assert not stale, f"{component}: docs/validation.md lists unknown arguments {stale}"


def test_optimizer_refuses_an_int_beyond_float_range():
    with pytest.raises(ValueError, match="learning_rate"):
        mx.optimizer.sgd(learning_rate=10**400)


# ---------------------------------------------- one convention (issue 19, item 15)

A_STRING_FOR_A_NUMBER = [
    lambda: mx.optimizer.sgd(wd="x"),
    lambda: mx.optimizer.lbsgd(warmup_epochs="x"),
    lambda: L.FactorScheduler(step=3, base_lr="x"),
    lambda: L.with_warmup(lambda n: 0.1, "x", warmup_final_lr=0.1),
    lambda: I.Uniform("x"),
    lambda: I.FusedRNN(I.Uniform(), "x", 1, "lstm"),
]


@pytest.mark.parametrize("build", A_STRING_FOR_A_NUMBER)
def test_a_string_for_a_number_is_a_type_error_in_the_one_format(build):
    with pytest.raises(TypeError, match=r"^\w+ must be (real|int) in .*, got 'x' \(a str\)$"):
        build()


def test_the_validators_rule_text_is_the_docs():
    """The message states the rule exactly as the doc's Rule column writes it."""
    from mxjax import _validate as V

    cases = [
        (lambda: V.real("a", -1.0, lo=0.0, hi=1.0, hi_open=True), "real in [0, 1)"),
        (lambda: V.real("a", None, lo=0.0), "real in [0, inf)"),
        (lambda: V.integer("a", 0, lo=1, hi=V.INT32_MAX), "int in [1, 2147483647]"),
        (lambda: V.flag("a", 1), "bool"),
        (lambda: V.choice("a", "x", ("linear", "constant")), 'one of "linear", "constant"'),
        (lambda: V.function("a", 1, none_ok=True), "callable or None"),
    ]
    for call, rule in cases:
        with pytest.raises((TypeError, ValueError)) as e:
            call()
        assert str(e.value).startswith(f"a must be {rule}, got "), (rule, e.value)
        parse_rule(rule)  # and the doc's parser reads it
