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


# Stateful bundles: a guard or an Enforcer commits the decision's holds when the guarded call
# returns and releases them when it raises (or does not run).
BUDGET = """
bundle wallet {
  version "1"
  timezone "UTC"
  hold_ttl "10m"
}

state spend {
  add amount
  key [subject.id]
  on [allow]
  apply commit
}

policy wallet {
  default allow
  match first

  rule over_budget deny {
    when spend.day + amount > 100
    reason f"spent or held {spend.day}"
  }
}
"""
T0 = "2025-03-20T09:00:00Z"


def payment(amount: float, agent: str = "a-1") -> dict:
    return {"subject": {"id": agent}, "data": {"amount": amount}}


@pytest.fixture(params=["memory", "redis"])
def wallet(request: pytest.FixtureRequest) -> verdict.Engine:
    if request.param == "memory":
        store: verdict.MemoryStore | verdict.RedisStore = verdict.MemoryStore()
    else:
        from conftest import fresh_prefix

        store = verdict.RedisStore(request.getfixturevalue("redis_server").url, prefix=fresh_prefix())
    return verdict.Engine.from_source(BUDGET, store=store)


def spent(engine: verdict.Engine) -> str:
    """What the day's series holds, as the refusal of an impossible payment tells it."""
    return engine.evaluate(payment(1000), now=T0).reason


def test_guard_commits_on_return_and_releases_on_exception(wallet: verdict.Engine) -> None:
    settled: list[str] = []

    @wallet.guard(context=lambda amount, fail=False: payment(amount), now=T0)
    def pay(amount: float, fail: bool = False) -> str:
        if fail:
            raise ConnectionError("gateway down")
        return "paid"

    wallet.on_decision(lambda r: settled.append(r.decision_id or ""))
    assert pay(30) == "paid"
    assert spent(wallet) == "spent or held 30"
    with pytest.raises(ConnectionError):
        pay(50, fail=True)
    assert spent(wallet) == "spent or held 30"  # released
    # The committed decision is committed: releasing it now is refused.
    with pytest.raises(verdict.StoreError, match="was committed"):
        wallet.release(settled[0], now=T0)
    with pytest.raises(verdict.StoreError, match="was released"):
        wallet.commit(settled[2], now=T0)
    # A refusal makes no holds; the call does not run.
    assert pay(60) == "paid" and spent(wallet) == "spent or held 90"
    with pytest.raises(verdict.PolicyViolation, match="spent or held 90"):
        pay(20)


def test_soft_and_async_guards_settle_too(wallet: verdict.Engine) -> None:
    @wallet.guard(context=lambda amount: payment(amount), mode="soft", now=lambda: T0)
    def pay(amount: float) -> float:
        if amount == 13:
            raise ValueError("unlucky")
        return amount

    first, second = pay(40), pay(40)
    assert (first.value, second.value, first.result.allowed) == (40, 40, True)
    assert spent(wallet) == "spent or held 80"
    with pytest.raises(ValueError):
        pay(13)
    assert spent(wallet) == "spent or held 80"
    refused = pay(30)
    assert (refused.result.kind, refused.value, refused.result.holds) == ("deny", None, [])

    @wallet.guard(context=lambda amount: payment(amount, "a-2"), now=T0)
    async def pay_async(amount: float) -> float:
        await asyncio.sleep(0)
        if amount > 35:
            raise TimeoutError("no answer")
        return amount

    assert asyncio.run(pay_async(30)) == 30
    with pytest.raises(TimeoutError):
        asyncio.run(pay_async(70))
    assert wallet.evaluate(payment(70, "a-2"), now=T0).allowed  # 30 committed, 70 released


def test_enforcer_settles_around_its_handler(wallet: verdict.Engine) -> None:
    def charge(r: verdict.EvaluationResult, amount: float) -> str:
        if amount == 13:
            raise ValueError("unlucky")
        return f"charged {amount}"

    enforcer = verdict.Enforcer(
        wallet, handlers={"allow": charge, "deny": lambda r, amount: f"refused: {r.reason}"}, now=T0
    )
    assert enforcer(payment(60), 60) == "charged 60"
    with pytest.raises(ValueError):
        enforcer(payment(13), 13)
    assert enforcer(payment(50), 50) == "refused: spent or held 60"
    # No handler for an allowed decision: fails closed, and its holds are released.
    partial = verdict.Enforcer(wallet, handlers={"deny": lambda r: "refused"}, now=T0)
    with pytest.raises(verdict.UnhandledDecision):
        partial(payment(40))
    assert spent(wallet) == "spent or held 60"
    # settle=False: the handler settles (here: after an asynchronous gateway answered).
    pending: list[verdict.EvaluationResult] = []
    manual = verdict.Enforcer(wallet, handlers={"allow": lambda r: pending.append(r)}, settle=False, now=T0)
    manual(payment(40))
    assert spent(wallet) == "spent or held 100"
    assert pending[0].release(now=T0) == "released"
    assert spent(wallet) == "spent or held 60"
