"""The enforcement helpers: `Engine.guard` (hard and soft) and `Enforcer` (dispatch by kind,
fail closed)."""

from __future__ import annotations

import asyncio
import json

import pytest
import verdict

BUNDLE = """
bundle gate {
  version "1"
  effects [block, require_review, degrade, allow]
}

policy gate {
  default block

  rule "pii" block {
    when query matches "[0-9]{3}-[0-9]{2}-[0-9]{4}"
    reason "the query carries an SSN"
    codes ["PII"]
  }

  rule "large" require_review {
    when max_results > 100
  }

  rule "busy" degrade {
    when load > 0.9
  }

  rule "search" allow {
    when action == "search"
  }
}
"""


@pytest.fixture(scope="module")
def engine() -> verdict.Engine:
    return verdict.Engine.from_source(BUNDLE)


def context(query: str, max_results: int = 10, load: float = 0.1, **_: object) -> dict:
    return {"action": "search", "data": {"query": query, "max_results": max_results, "load": load}}


def test_hard_guard_runs_allowed_calls_and_raises_on_the_rest(engine: verdict.Engine) -> None:
    calls: list[str] = []

    @engine.guard(context=context)
    def search(query: str, max_results: int = 10, load: float = 0.1) -> list[str]:
        """Searches."""
        calls.append(query)
        return [query] * 2

    assert search("cats") == ["cats", "cats"]
    assert search.__name__ == "search" and search.__doc__ == "Searches."
    with pytest.raises(verdict.PolicyViolation) as e:
        search("my ssn is 123-45-6789")
    assert e.value.result.kind == "block" and e.value.result.rule_id == "pii"
    assert "policy violation: block by rule 'pii' of policy 'gate': the query carries an SSN" == str(e.value)
    with pytest.raises(verdict.PolicyViolation) as e:
        search("cats", max_results=500)
    assert e.value.result.kind == "require_review"
    assert isinstance(e.value, verdict.VerdictError)
    assert calls == ["cats"]


def test_soft_guard_returns_guarded_and_never_raises_for_a_decision(engine: verdict.Engine) -> None:
    calls: list[str] = []

    @engine.guard(context=context, mode="soft")
    def search(query: str, max_results: int = 10, load: float = 0.1) -> int:
        calls.append(query)
        return len(query)

    ok = search("cats")
    assert isinstance(ok, verdict.Guarded) and ok.value == 4 and ok.result.allowed
    result, value = search("cats", load=0.95)
    assert (result.kind, value) == ("degrade", None)
    blocked = search("123-45-6789")
    assert (blocked.result.kind, blocked.value) == ("block", None)
    assert calls == ["cats"]


def test_the_guarded_functions_own_errors_propagate(engine: verdict.Engine) -> None:
    @engine.guard(context=context, mode="soft")
    def failing(query: str) -> None:
        raise LookupError("backend down")

    with pytest.raises(LookupError):
        failing("cats")


def test_guard_contexts(engine: verdict.Engine) -> None:
    # A static dict, JSON text, or a callable of the function's arguments.
    static = engine.guard(context=context("cats"))(lambda: "ran")
    assert static() == "ran"
    text = engine.guard(context=json.dumps(context("123-45-6789")), mode="soft")(lambda: "ran")
    assert text().result.kind == "block"
    with pytest.raises(verdict.VerdictError, match="guard needs a context"):
        engine.guard()
    with pytest.raises(ValueError, match="mode must be"):
        engine.guard(context=context, mode="lenient")  # type: ignore[call-overload]
    # A context the runtime refuses raises in both modes: there is no decision to return.
    bad = engine.guard(context={"bogus": 1}, mode="soft")(lambda: "ran")
    with pytest.raises(verdict.RequestError):
        bad()


def test_async_functions_are_guarded(engine: verdict.Engine) -> None:
    @engine.guard(context=context)
    async def search(query: str) -> str:
        await asyncio.sleep(0)
        return query.upper()

    assert asyncio.run(search("cats")) == "CATS"
    with pytest.raises(verdict.PolicyViolation):
        asyncio.run(search("123-45-6789"))


def test_guard_decisions_reach_observers(engine: verdict.Engine) -> None:
    local = verdict.Engine.from_source(BUNDLE)
    seen: list[str] = []
    local.on_decision(lambda r: seen.append(r.kind))
    guarded = local.guard(context=context, mode="soft")(lambda query: query)
    guarded("cats")
    guarded("123-45-6789")
    assert seen == ["allow", "block"]


def test_enforcer_dispatches_by_kind(engine: verdict.Engine) -> None:
    log: list[tuple[str, str]] = []
    enforcer = verdict.Enforcer(
        engine,
        handlers={
            "allow": lambda r, prompt: log.append(("run", prompt)) or "answer",
            "block": lambda r, prompt: log.append(("refuse", r.reason)) or "refused",
            "require_review": lambda r, prompt: log.append(("queue", prompt)) or "queued",
            "degrade": lambda r, prompt, model="big": log.append(("small", model)) or "small answer",
        },
    )
    assert enforcer(context("cats"), "hi") == "answer"
    assert enforcer(context("123-45-6789"), "hi") == "refused"
    assert enforcer(context("cats", max_results=1000), prompt="hi") == "queued"
    assert enforcer(context("cats", load=0.99), "hi", model="small") == "small answer"
    assert log == [("run", "hi"), ("refuse", "the query carries an SSN"), ("queue", "hi"), ("small", "small")]


def test_enforcer_fails_closed_on_a_kind_without_handler(engine: verdict.Engine) -> None:
    ran: list[str] = []
    enforcer = verdict.Enforcer(engine, handlers={"allow": lambda r: ran.append("allow")})
    with pytest.raises(verdict.UnhandledDecision) as e:
        enforcer(context("cats", load=0.99))
    assert e.value.result.kind == "degrade"
    assert "no handler for decision kind 'degrade' (handlers: allow)" == str(e.value)
    assert ran == []


def test_enforcer_refuses_handlers_for_kinds_the_bundle_cannot_decide(engine: verdict.Engine) -> None:
    with pytest.raises(verdict.VerdictError, match="unknown decision kinds \\['alow'\\]"):
        verdict.Enforcer(engine, handlers={"alow": lambda r: None})
    with pytest.raises(TypeError, match="not callable"):
        verdict.Enforcer(engine, handlers={"allow": "run"})  # type: ignore[dict-item]
    # `not_applicable` is a kind every bundle can decide.
    verdict.Enforcer(engine, handlers={"not_applicable": lambda r: None})
