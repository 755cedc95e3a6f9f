"""One engine shared by 8 threads at once gives every thread the same results as one thread."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import verdict
from conftest import EXAMPLES, NOW, read_cases, seed_compat

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
