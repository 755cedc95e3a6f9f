"""One engine shared by 8 threads at once gives every thread the same results as one thread, with
externs too; one stateful engine and its store (in memory or Redis) shared by 8 threads spends
exactly its budget, never more."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import verdict
from conftest import EXAMPLES, NOW, fresh_prefix, read_cases, seed_compat

THREADS = 8
ROUNDS = 20


def _run(engines: list[tuple[verdict.Engine, list]], trace: bool) -> None:
    want = [[e.evaluate(c, now=NOW, trace=trace).to_dict() for c in contexts] for e, contexts in engines]
    barrier = threading.Barrier(THREADS)

    def worker(k: int) -> list:
        barrier.wait()
        got = []
        for _ in range(ROUNDS):
            for e, contexts in engines:
                # Alternate dicts and JSON text between threads.
                got.append([e.evaluate(c if k % 2 else json.dumps(c), now=NOW, trace=trace).to_dict() for c in contexts])
        return got

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(worker, range(THREADS)))
    for got in outcomes:
        assert got == want * ROUNDS


def _workload(backend: str) -> list[tuple[verdict.Engine, list]]:
    engines = []
    for example in ("quickstart", "ai-inference", "tenant-mask"):
        contexts = [c["context"] for c in read_cases(EXAMPLES / example / "cases.jsonl")]
        engines.append((verdict.Engine.load(EXAMPLES / example / "bundle.verdict", backend=backend), contexts))
    line = seed_compat()[0]
    engines.append((verdict.Engine.from_source(json.dumps(line["bundle"]), form="json", backend=backend),
                    [c["context"] for c in line["cases"]]))
    return engines


def test_eight_threads_jit() -> None:
    _run(_workload("jit"), trace=False)


def test_eight_threads_vm_traced() -> None:
    _run(_workload("vm"), trace=True)


def test_eight_threads_interp() -> None:
    _run(_workload("interp"), trace=False)


def test_observers_from_eight_threads() -> None:
    engine = verdict.Engine.load(EXAMPLES / "quickstart" / "bundle.verdict")
    seen: list[str] = []
    lock = threading.Lock()

    def observe(r: verdict.EvaluationResult) -> None:
        with lock:
            seen.append(r.kind)
        if r.kind == "deny":
            raise RuntimeError("counted")

    engine.on_decision(observe)
    contexts = [c["context"] for c in read_cases(EXAMPLES / "quickstart" / "cases.jsonl")]
    kinds = [engine.evaluate(c, now=NOW).kind for c in contexts]
    seen.clear()
    errors_before = engine.observer_errors

    def worker(_: int) -> None:
        for _ in range(ROUNDS):
            for c in contexts:
                engine.evaluate(c, now=NOW)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    assert sorted(seen) == sorted(kinds * ROUNDS * THREADS)
    assert engine.observer_errors - errors_before == kinds.count("deny") * ROUNDS * THREADS


PAYMENT_AGENT = EXAMPLES / "python" / "payment_agent" / "bundle.verdict"
TODAY = "2025-03-20T12:00:00Z"


def _spend_from_threads(store: verdict.MemoryStore | verdict.RedisStore, release_every: int | None) -> dict[str, int]:
    """8 threads pay $5 at a time from one agent's $500 daily budget through one engine and one
    store until each sees the budget spent; approvals are committed (or every n-th released).
    Store contention (a shared store giving up its retries) fails closed and is counted."""
    engine = verdict.Engine.load(PAYMENT_AGENT, store=store)
    context = {"subject": {"id": "agent-1"}, "data": {"amount": 5, "merchant": "aws", "currency": "USD"}}
    counts = {"approved": 0, "committed": 0, "released": 0, "contention": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(2000):  # hang guard
            r = engine.evaluate(context if k % 2 else json.dumps(context), now=TODAY)
            if r.allowed:
                assert r.holds == [{"state": "spend", "key": ["agent-1"], "amount": 5}]
                release = release_every is not None and i % release_every == 0
                assert (r.release(now=TODAY) if release else r.commit(now=TODAY)) == ("released" if release else "committed")
                with lock:
                    counts["approved"] += 1
                    counts["released" if release else "committed"] += 1
            elif r.reason.startswith("state error: store contention"):
                with lock:
                    counts["contention"] += 1
            else:
                assert r.rule_id == "daily_budget", r.reason
                return
        raise AssertionError(f"thread {k} never saw the budget spent")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    final = engine.evaluate({**context, "data": {**context["data"], "amount": 0.01}}, now=TODAY)
    counts["spent"] = round(float(final.reason.split("$")[1].split(" ")[0]))
    return counts


def _store(kind: str, request: pytest.FixtureRequest) -> verdict.MemoryStore | verdict.RedisStore:
    if kind == "memory":
        return verdict.MemoryStore()
    return verdict.RedisStore(request.getfixturevalue("redis_server").url, prefix=fresh_prefix())


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_eight_threads_spend_exactly_the_budget(store: str, request: pytest.FixtureRequest) -> None:
    counts = _spend_from_threads(_store(store, request), None)
    assert (counts["approved"], counts["committed"], counts["spent"]) == (100, 100, 500), counts


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_eight_threads_releasing_never_overspend(store: str, request: pytest.FixtureRequest) -> None:
    counts = _spend_from_threads(_store(store, request), 7)
    assert counts["released"] > 0 and counts["committed"] == 100, counts
    assert counts["spent"] == 500 and counts["approved"] == counts["committed"] + counts["released"], counts


EXTERN_BUNDLE = """
bundle x { version "1" }
extern score(string) -> number
policy p {
  default allow
  rule high deny {
    when score(subject.id) > 0.5
    reason f"score {score(subject.id)} of {subject.id}"
  }
}
"""


def test_externs_from_eight_threads() -> None:
    def score(subject: str) -> float:
        return (sum(map(ord, subject)) % 10) / 10

    for backend in ("jit", "vm", "interp"):
        engine = verdict.Engine.from_source(EXTERN_BUNDLE, backend=backend, externs={"score": score})
        contexts = [{"subject": {"id": f"user-{i}"}} for i in range(40)]
        want = [engine.evaluate(c).to_dict() for c in contexts]
        assert {w["decision"]["kind"] for w in want} == {"allow", "deny"}
        barrier = threading.Barrier(THREADS)

        def worker(_: int) -> list:
            barrier.wait()
            return [[engine.evaluate(c).to_dict() for c in contexts] for _ in range(ROUNDS)]

        with ThreadPoolExecutor(THREADS) as pool:
            for got in pool.map(worker, range(THREADS)):
                assert got == [want] * ROUNDS, backend
