"""Externs as Python callables (LANGUAGE.md §5.3) and exhaustive results (§5.4): the example
`guard` (RuleGate's predicates, some raising) with Python functions in place of the CLI's mocks
gives what `verdict eval --externs` prints, plain and exhaustive, and makes the calls the RuleGate
model expects, in order; a callable that raises or returns the wrong thing fails closed with a
reason that names the extern and the error; decisions that call externs are never shared."""

from __future__ import annotations

import builtins
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import verdict
from conftest import EXAMPLES, read_cases

GUARD = EXAMPLES / "guard"
Calls = list[dict[str, Any]]


def bind(mocks: dict[str, Any], calls: Calls) -> dict[str, Callable[..., Any]]:
    """Python callables for the CLI's mocks: `{"name": RESULT}` returns it, `{"name": {"error":
    "ExcType: message"}}` raises that built-in exception. Every call is recorded."""

    def make(name: str, mock: Any) -> Callable[..., Any]:
        def extern(*args: Any) -> Any:
            calls.append({"name": name, "args": list(args)})
            if isinstance(mock, dict) and "error" in mock:
                kind, message = mock["error"].split(": ", 1)
                raise getattr(builtins, kind)(message)
            return mock

        return extern

    return {name: make(name, mock) for name, mock in mocks.items()}


class Externs:
    """Bindings whose behaviour each request sets (an engine's externs are fixed at load)."""

    def __init__(self) -> None:
        self.current: dict[str, Callable[..., Any]] = {}

    def table(self, names: tuple[str, ...]) -> dict[str, Callable[..., Any]]:
        return {name: (lambda *a, _n=name: self.current[_n](*a)) for name in names}


def cli(bin: Path, source: Path, request: dict[str, Any], tmp: Path, *extra: str) -> str:
    ctx, ext = tmp / "ctx.json", tmp / "ext.json"
    ctx.write_text(json.dumps(request["context"]))
    ext.write_text(json.dumps(request["externs"]))
    cmd = [str(bin), "eval", str(source), str(ctx), "--externs", str(ext), "--now", request["now"], *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode in (0, 1), run.stderr
    # One context: pretty-printed JSON; compared as compact text, the key order kept.
    return compact(json.loads(run.stdout))


def compact(d: dict[str, Any]) -> str:
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("backend", ["jit", "vm", "interp"])
@pytest.mark.parametrize("source", ["bundle.verdict", "bundle.yaml"])
def test_guard_example_with_python_callables(verdict_bin: Path, source: str, backend: str, tmp_path: Path) -> None:
    hosts = Externs()
    names = ("no_pii", "safe_path", "within_quota", "toxicity")
    engine = verdict.Engine.load(GUARD / source, backend=backend, externs=hosts.table(names))
    assert engine.externs == names and not engine.stateful
    requests = read_cases(GUARD / "requests.jsonl")
    expected = read_cases(GUARD / "expected.jsonl")
    assert len(requests) == len(expected) == 13
    for request, want in zip(requests, expected):
        name = want["name"]
        calls: Calls = []
        hosts.current = bind(request["externs"], calls)
        plain = engine.evaluate(request["context"], now=request["now"])
        d = plain.to_dict()["decision"]
        assert {k: d[k] for k in ("kind", "matched_rule_id", "reason")} == want["decision"], name
        assert calls == want["extern_calls"], name
        assert (plain.matches, plain.rules_evaluated) == (None, None)
        calls.clear()
        full = engine.evaluate(request["context"], now=request["now"], exhaustive=True, trace=True)
        assert calls == want["exhaustive_extern_calls"], name
        assert full.to_dict()["decision"] == plain.to_dict()["decision"], name
        assert {"matches": full.matches, "rules_evaluated": full.rules_evaluated} == want["exhaustive"], name
        # Exactly the CLI's JSON, with its mocks in place of the callables.
        if backend != "interp":
            assert compact(plain.to_dict()) == cli(verdict_bin, GUARD / source, request, tmp_path, "--backend", backend), name
            assert compact(full.to_dict()) == cli(
                verdict_bin, GUARD / source, request, tmp_path, "--backend", backend, "--exhaustive", "--trace"
            ), name


BUNDLE = """
bundle b {
  version "1"
  effects [deny, review, allow]
}

extern risk(string, number) -> number

extern no_pii(string) -> bool

policy p {
  default allow

  rule pii deny {
    when not no_pii(query)
    reason "personal data"
  }

  rule risky review {
    when risk(subject.id, amount) > 0.8
  }
}
"""

CTX = {"subject": {"id": "u-1"}, "data": {"query": "hello", "amount": 3}}


def engine_with(backend: str = "jit", **fns: Callable[..., Any]) -> verdict.Engine:
    externs = {"no_pii": lambda q: True, "risk": lambda s, a: 0.1}
    externs.update(fns)
    return verdict.Engine.from_source(BUNDLE, backend=backend, externs=externs)


@pytest.fixture(params=["jit", "vm", "interp"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_arguments_and_results_are_python_values(backend: str) -> None:
    seen: list[tuple[Any, ...]] = []

    def risk(subject: str, amount: float) -> float:
        seen.append((subject, amount))
        return 0.9 if amount > 2 else 0.1

    engine = engine_with(backend, risk=risk)
    r = engine.evaluate(CTX)
    assert (r.kind, r.rule_id) == ("review", "risky")
    assert seen == [("u-1", 3)] and type(seen[0][1]) is int
    assert engine.evaluate({**CTX, "data": {"query": "x", "amount": 1.5}}).kind == "allow"
    assert seen[-1] == ("u-1", 1.5)


class QuotaExceeded(Exception):
    pass


@pytest.mark.parametrize(
    ("fn", "reason"),
    [
        (lambda q: (_ for _ in ()).throw(ValueError("bad query")), "extern error: no_pii: ValueError: bad query"),
        (lambda q: (_ for _ in ()).throw(QuotaExceeded()), "extern error: no_pii: QuotaExceeded"),
        (lambda q: (_ for _ in ()).throw(TimeoutError("moderation: 30 s")), "extern error: no_pii: TimeoutError: moderation: 30 s"),
        (lambda: True, "extern error: no_pii: TypeError: "),
        (lambda q: "yes", "extern error: no_pii: returned string, expected bool"),
        (lambda q: None, "extern error: no_pii: returned null, expected bool"),
        (lambda q: {1, 2}, "extern error: no_pii: the result is not JSON: "),
        (lambda q: float("nan"), "extern error: no_pii: the result is not JSON: "),
    ],
    ids=["raises", "no-message", "timeout", "wrong-arity", "wrong-type", "none", "set", "nan"],
)
def test_failing_externs_fail_closed(backend: str, fn: Callable[..., Any], reason: str) -> None:
    r = engine_with(backend, no_pii=fn).evaluate(CTX)
    # The most severe effect, the rule whose condition failed, the extern and the error named.
    assert (r.kind, r.rule_id) == ("deny", "pii")
    assert r.reason.startswith(reason), r.reason
    if reason.endswith(": "):
        assert len(r.reason) > len(reason)
    else:
        assert r.reason == reason


def test_unbound_externs_fail_closed(backend: str) -> None:
    for externs in (None, {"risk": lambda s, a: 0.1}):
        r = verdict.Engine.from_source(BUNDLE, backend=backend, externs=externs).evaluate(CTX)
        assert (r.kind, r.rule_id) == ("deny", "pii")
        assert r.reason.startswith("extern error: no_pii: "), r.reason


def test_exhaustive_results_list_every_failure(backend: str) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError("down")

    engine = engine_with(backend, no_pii=lambda q: False, risk=boom)
    r = engine.evaluate(CTX, exhaustive=True)
    assert r.rule_id == "pii" and r.reason == "personal data"
    assert r.matches == [
        {"policy_id": "p", "rule_id": "pii", "effect": "deny"},
        {"policy_id": "p", "rule_id": "risky", "error": "extern error: risk: RuntimeError: down"},
    ]
    assert r.rules_evaluated == 2
    assert list(r.to_dict())[-2:] == ["matches", "rules_evaluated"]


def test_base_exceptions_propagate_after_the_decision_failed_closed(backend: str) -> None:
    def interrupted(q: str) -> bool:
        raise KeyboardInterrupt

    engine = engine_with(backend, no_pii=interrupted)
    seen: list[str] = []
    engine.on_decision(lambda r: seen.append(r.kind))
    with pytest.raises(KeyboardInterrupt):
        engine.evaluate(CTX)
    assert seen == []
    # The engine is intact.
    assert engine_with(backend).evaluate(CTX).kind == "allow"


def test_decisions_that_call_externs_are_never_shared() -> None:
    # The same outcome (the default) from different host answers: each decision calls the host
    # and builds its own result.
    scores = iter([0.1, 0.2, 0.3, 0.9, 0.4])
    calls: list[str] = []

    def risk(s: str, a: float) -> float:
        calls.append(s)
        return next(scores)

    engine = engine_with("jit", risk=risk)
    results = [engine.evaluate(CTX) for _ in range(5)]
    assert [r.kind for r in results] == ["allow", "allow", "allow", "review", "allow"]
    assert calls == ["u-1"] * 5
    assert len({id(r) for r in results}) == 5


def test_an_extern_may_evaluate_other_engines() -> None:
    inner = verdict.Engine.from_source(BUNDLE, externs={"no_pii": lambda q: "@" not in q, "risk": lambda s, a: 0.0})
    outer = engine_with("jit", no_pii=lambda q: inner.evaluate({"subject": {"id": "inner"}, "data": {"query": q, "amount": 0}}).allowed)
    assert outer.evaluate(CTX).kind == "allow"
    assert outer.evaluate({**CTX, "data": {"query": "a@b.c", "amount": 1}}).rule_id == "pii"


def test_an_extern_cannot_start_a_stateful_decision_inside_one() -> None:
    stateful = """
bundle s { version "1" }
extern check(string) -> bool
state hits { add 1  key [subject.id]  on [allow]  apply decision }
policy p {
  default allow
  rule r deny {
    when not check(subject.id) or hits.total > 100
  }
}
"""
    holder: list[verdict.Engine] = []
    engine = verdict.Engine.from_source(
        stateful, externs={"check": lambda s: holder[0].evaluate({"subject": {"id": "x"}}).allowed}
    )
    holder.append(engine)
    r = engine.evaluate({"subject": {"id": "u"}})
    assert r.kind == "deny"
    assert r.reason.startswith("extern error: check: VerdictError: a stateful decision, commit or release cannot run"), r.reason


def test_extern_bindings_are_checked_at_load() -> None:
    with pytest.raises(verdict.VerdictError, match="the bundle declares no extern `no_pi` \\(it declares: risk, no_pii\\)"):
        verdict.Engine.from_source(BUNDLE, externs={"no_pi": lambda q: True})
    with pytest.raises(TypeError, match="the extern `no_pii` must be bound to a callable, not `bool`"):
        verdict.Engine.from_source(BUNDLE, externs={"no_pii": True})
    with pytest.raises(TypeError, match="externs must be a dict"):
        verdict.Engine.from_source(BUNDLE, externs=[("no_pii", lambda q: True)])  # type: ignore[arg-type]
    with pytest.raises(verdict.VerdictError, match="declares: none"):
        verdict.Engine.load(EXAMPLES / "quickstart" / "bundle.verdict", externs={"x": print})
