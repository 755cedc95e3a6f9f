"""Stateful bundles through the package (LANGUAGE.md §5.2): the examples `spend` (paygraph's budgets
with holds) and `abuse` (denials over a sliding hour) replayed event by event give exactly what
`verdict eval --events` prints, on every backend and on both stores (in-memory, and Redis through a
real `redis-server`); decision ids and holds; commit and release by result and by id; a store
shared by engines, by `RedisStore` objects and by processes; a Redis that is down fails closed."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import verdict
from conftest import EXAMPLES, RedisServer, fresh_prefix, read_cases

SPEND = EXAMPLES / "spend" / "bundle.verdict"

_cli_outputs: dict[tuple[str, str], list[str]] = {}


def cli_events(bin: Path, example: str, source: str) -> list[str]:
    """`verdict eval BUNDLE --events events.jsonl --trace`: one JSON text per event (the same on
    every backend, as the CLI's own tests check)."""
    key = (example, source)
    if key not in _cli_outputs:
        cmd = [str(bin), "eval", str(EXAMPLES / example / source), "--events", str(EXAMPLES / example / "events.jsonl"),
               "--trace", "--backend", "vm"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert run.returncode in (0, 1), run.stderr
        _cli_outputs[key] = run.stdout.splitlines()
    return _cli_outputs[key]


def replay(engine: verdict.Engine, events: list[dict[str, Any]]) -> list[str]:
    """What `verdict eval --events` does, through the package: each event decided at its `now`
    under the id `e<line>`, then its holds committed (the default), released or left."""
    out = []
    for n, event in enumerate(events, 1):
        now = event.get("now")
        r = engine.evaluate(event["context"], now=now, trace=True, decision_id=f"e{n}")
        if r.holds:
            then = event.get("then", "commit")
            if then == "commit":
                assert r.commit(now=now) == "committed"
            elif then == "release":
                assert r.release(now=now) == "released"
        out.append(json.dumps(r.to_dict(), ensure_ascii=False, separators=(",", ":")))
    return out


def store_for(kind: str, request: pytest.FixtureRequest) -> verdict.MemoryStore | verdict.RedisStore:
    if kind == "memory":
        return verdict.MemoryStore()
    server: RedisServer = request.getfixturevalue("redis_server")
    return verdict.RedisStore(server.url, prefix=fresh_prefix())


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("backend", ["jit", "vm", "interp"])
@pytest.mark.parametrize("source", ["bundle.verdict", "bundle.yaml"])
@pytest.mark.parametrize("example", ["spend", "abuse"])
def test_examples_replay_as_the_cli(
    verdict_bin: Path, example: str, source: str, backend: str, store: str, request: pytest.FixtureRequest
) -> None:
    events = read_cases(EXAMPLES / example / "events.jsonl")
    engine = verdict.Engine.load(EXAMPLES / example / source, backend=backend, store=store_for(store, request))
    assert engine.stateful
    got = replay(engine, events)
    want = cli_events(verdict_bin, example, source)
    assert len(got) == len(want) == len(events)
    for n, (g, w) in enumerate(zip(got, want), 1):
        assert g == w, f"event {n}"
    # The independent model's answers (`make_expected.py`), field by field.
    for n, (g, e) in enumerate(zip(got, read_cases(EXAMPLES / example / "expected.jsonl")), 1):
        d = json.loads(g)
        assert (d["decision"]["kind"], d["decision"]["matched_rule_id"], d["decision"]["reason"]) == (
            e["kind"], e["rule"], e["reason"]), f"event {n}"
        if "holds" in e:
            assert d.get("holds", []) == e["holds"], f"event {n}"


PAY = {"subject": {"id": "agent-1"}, "data": {"amount": 40, "vendor": "aws", "justification": "eval run"}}
T0 = "2025-03-20T09:00:00Z"


def pay(amount: float, agent: str = "agent-1") -> dict[str, Any]:
    return {"subject": {"id": agent}, "data": {"amount": amount, "vendor": "aws", "justification": "eval run"}}


def test_decision_ids_and_holds_in_the_result() -> None:
    engine = verdict.Engine.load(SPEND)
    r = engine.evaluate(PAY, now=T0)
    assert re.fullmatch(r"d-[0-9a-f]{32}", r.decision_id or "")
    assert r.holds == [{"state": "spend", "key": ["agent-1"], "amount": 40}]
    d = r.to_dict()
    assert list(d) == ["bundle_id", "bundle_version", "fingerprint", "decision", "policy_decisions", "decision_id", "holds"]
    assert (d["decision_id"], d["holds"]) == (r.decision_id, r.holds)
    # A given id is used as it is; a deny makes no holds and its result has no `holds` key.
    denied = engine.evaluate(pay(75), now=T0, decision_id="my-id")
    assert (denied.decision_id, denied.holds, denied.rule_id) == ("my-id", [], "amount_cap")
    assert "holds" not in denied.to_dict() and denied.to_dict()["decision_id"] == "my-id"
    assert denied.commit(now=T0) is None and denied.release(now=T0) is None
    # Stateless bundles: no id, no holds.
    plain = verdict.Engine.load(EXAMPLES / "quickstart" / "bundle.verdict")
    assert not plain.stateful
    s = plain.evaluate({"subject": {"id": "u", "role": "admin"}, "action": "update", "resource": {"tags": []}})
    assert (s.decision_id, s.holds) == (None, [])
    assert "decision_id" not in s.to_dict()


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_holds_count_until_released_and_commits_are_permanent(store: str, request: pytest.FixtureRequest) -> None:
    engine = verdict.Engine.load(SPEND, store=store_for(store, request))
    a = engine.evaluate(pay(50), now=T0)
    b = engine.evaluate(pay(50), now=T0)
    assert a.allowed and b.allowed
    # 100 held: the hourly budget is spent while both payments are in flight.
    c = engine.evaluate(pay(10), now=T0)
    assert (c.rule_id, c.reason) == ("hourly_budget", "Hourly budget exhausted ($100.00 / $100.00)")
    assert a.release(now=T0) == "released"
    assert a.release(now=T0) == "released"  # idempotent
    assert b.commit(now=T0) == "committed"
    assert engine.commit(b.decision_id, now=T0) == "committed"  # idempotent, by id
    d = engine.evaluate(pay(10), now=T0)
    assert d.allowed and d.holds == [{"state": "spend", "key": ["agent-1"], "amount": 10}]
    assert engine.release(d.decision_id, now=T0) == "released"
    # Settling the other way is an error that changes nothing.
    with pytest.raises(verdict.StoreError, match=f"decision `{a.decision_id}` was released"):
        a.commit(now=T0)
    with pytest.raises(verdict.StoreError, match="was committed"):
        engine.release(b.decision_id, now=T0)
    with pytest.raises(verdict.StoreError, match="unknown decision `nope`"):
        engine.commit("nope", now=T0)
    # Another agent's series is its own.
    assert engine.evaluate(pay(50, "agent-2"), now=T0).allowed
    # An unsettled hold stops counting `hold_ttl` (10 minutes) after its decision, and then can
    # no longer be committed.
    e = engine.evaluate(pay(50), now="2025-03-20T09:01:00Z")
    assert engine.evaluate(pay(50), now="2025-03-20T09:10:59Z").rule_id == "hourly_budget"
    late = engine.evaluate(pay(50), now="2025-03-20T09:11:00Z")
    assert late.allowed
    with pytest.raises(verdict.StoreError, match="expired"):
        e.commit(now="2025-03-20T09:11:00Z")


def test_a_stateful_bundle_without_a_store_gets_its_own_and_a_shared_store_is_shared() -> None:
    # Without `store=`: the engine's own in-memory store (as `verdict eval`'s default).
    one, two = verdict.Engine.load(SPEND), verdict.Engine.load(SPEND)
    assert one.evaluate(pay(50), now=T0).allowed and one.evaluate(pay(50), now=T0).allowed
    assert two.evaluate(pay(50), now=T0).allowed
    # One store given to two engines (the DSL and the YAML form of the bundle) is shared.
    store = verdict.MemoryStore()
    dsl = verdict.Engine.load(SPEND, store=store)
    yaml = verdict.Engine.load(EXAMPLES / "spend" / "bundle.yaml", store=store, backend="vm")
    r = dsl.evaluate(pay(50), now=T0)
    assert dsl.evaluate(pay(40), now=T0).allowed
    assert yaml.evaluate(pay(20), now=T0).rule_id == "hourly_budget"
    # Either engine settles the other's decision.
    assert yaml.release(r.decision_id or "", now=T0) == "released"
    assert yaml.evaluate(pay(20), now=T0).allowed


def test_stateless_engines_have_nothing_to_settle() -> None:
    engine = verdict.Engine.load(EXAMPLES / "quickstart" / "bundle.verdict")
    with pytest.raises(verdict.VerdictError, match="no state store"):
        engine.commit("d-1")
    with pytest.raises(TypeError, match="store must be a verdict.MemoryStore or a verdict.RedisStore"):
        verdict.Engine.load(SPEND, store={})  # type: ignore[arg-type]


def test_now_forms_for_state() -> None:
    engine = verdict.Engine.load(SPEND)
    # An aware datetime in another offset is the same instant as its UTC text.
    berlin = dt.timezone(dt.timedelta(hours=1))
    r = engine.evaluate(pay(50), now=dt.datetime(2025, 3, 20, 10, 0, tzinfo=berlin))
    assert r.allowed and r.commit(now=dt.datetime(2025, 3, 20, 9, 0, 1, tzinfo=dt.timezone.utc)) == "committed"
    assert engine.evaluate(pay(50), now="2025-03-20T09:30:00Z").commit(now="2025-03-20T10:30:00+01:00") == "committed"
    assert engine.evaluate(pay(1), now="2025-03-20T09:59:59Z").rule_id == "hourly_budget"
    assert engine.evaluate(pay(1), now="2025-03-20T10:00:00Z").allowed
    with pytest.raises(verdict.RequestError, match="naive datetime"):
        engine.evaluate(pay(1), now=dt.datetime(2025, 3, 20, 10, 0))
    with pytest.raises(verdict.RequestError, match="naive datetime"):
        r.commit(now=dt.datetime(2025, 3, 20, 10, 0))


def test_redis_stores_share_state_across_objects_and_processes(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    a = verdict.Engine.load(SPEND, store=verdict.RedisStore(redis_server.url, prefix=prefix))
    b = verdict.Engine.load(SPEND, store=verdict.RedisStore(redis_server.url, prefix=prefix), backend="vm")
    other = verdict.Engine.load(SPEND, store=verdict.RedisStore(redis_server.url, prefix=fresh_prefix()))
    first = a.evaluate(pay(50), now=T0)
    second = b.evaluate(pay(45), now=T0)
    assert first.allowed and second.allowed
    assert a.evaluate(pay(10), now=T0).reason == "Hourly budget exhausted ($95.00 / $100.00)"
    assert other.evaluate(pay(50), now=T0).allowed  # another prefix: another state
    assert a.release(second.decision_id or "", now=T0) == "released"
    # Another process commits the decision this one made, then sees the commit.
    script = (
        "import sys, verdict\n"
        f"e = verdict.Engine.load({str(SPEND)!r}, store=verdict.RedisStore(sys.argv[1], prefix=sys.argv[2]))\n"
        f"print(e.commit(sys.argv[3], now={T0!r}))\n"
        f"print(e.evaluate({json.dumps(pay(40))}, now={T0!r}).reason)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, redis_server.url, prefix, first.decision_id or ""],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["committed", "no rule matched; policy default_effect='allow'"]
    # 50 committed + 40 held by the other process: this one is refused.
    assert a.evaluate(pay(20), now=T0).reason == "Hourly budget exhausted ($90.00 / $100.00)"
    with pytest.raises(verdict.StoreError, match="was committed"):
        first.release(now=T0)
    with pytest.raises(verdict.StoreError, match="was committed"):
        b.release(first.decision_id or "", now=T0)
    store = verdict.RedisStore(redis_server.url, prefix=prefix)
    store.ping()
    assert store.prefix == prefix and repr(store) == f"RedisStore(prefix=\"{prefix}\")"


def test_a_redis_that_is_down_fails_closed() -> None:
    # Nothing listens on the discard port: every operation fails within its timeouts.
    store = verdict.RedisStore("redis://127.0.0.1:9/0", connect_timeout=0.5, io_timeout=0.5)
    engine = verdict.Engine.load(SPEND, store=store)
    r = engine.evaluate(pay(10), now=T0)
    assert r.kind == "deny" and r.reason.startswith("state error: store unavailable"), r.reason
    assert r.holds == []
    with pytest.raises(verdict.StoreError, match="store unavailable"):
        engine.commit("d-1", now=T0)
    with pytest.raises(verdict.StoreError):
        store.ping()
    with pytest.raises(verdict.VerdictError, match="invalid redis url"):
        verdict.RedisStore("http://example.com")
    with pytest.raises(ValueError, match="connect_timeout must be a positive number"):
        verdict.RedisStore("redis://127.0.0.1:9/0", connect_timeout=0)
