"""`on_decision` observers: called with every result, in order; what they raise is counted,
never propagated."""

from __future__ import annotations

import gc
import weakref

import pytest
import verdict

BUNDLE = 'bundle b { version "1" }\npolicy p {\n  default deny\n\n  rule r allow {\n    when subject.role == "admin"\n  }\n}\n'


def test_observers_see_every_result_in_order() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    seen: list[tuple[str, str]] = []
    first = engine.on_decision(lambda r: seen.append(("first", r.kind)))
    assert callable(first)

    @engine.on_decision
    def second(r: verdict.EvaluationResult) -> None:
        seen.append(("second", r.kind))

    results = [engine.evaluate({"subject": {"role": role}}) for role in ("admin", "guest")]
    assert [r.kind for r in results] == ["allow", "deny"]
    assert seen == [("first", "allow"), ("second", "allow"), ("first", "deny"), ("second", "deny")]
    assert engine.observer_errors == 0


def test_observer_exceptions_are_counted_never_raised() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    after: list[str] = []

    def broken(r: verdict.EvaluationResult) -> None:
        raise ValueError("observer bug")

    engine.on_decision(broken)
    engine.on_decision(lambda r: 1 / 0)
    engine.on_decision(lambda r: after.append(r.kind))
    for _ in range(3):
        assert engine.evaluate({"subject": {"role": "admin"}}).allowed
    assert engine.observer_errors == 6
    # Observers after a failing one still run.
    assert after == ["allow"] * 3


def test_observers_receive_the_callers_result_object() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    seen: list[verdict.EvaluationResult] = []
    engine.on_decision(seen.append)
    r = engine.evaluate({"subject": {"role": "admin"}}, trace=True)
    assert seen == [r] and seen[0] is r and seen[0].trace is not None


def test_an_observer_that_interrupts_still_interrupts() -> None:
    engine = verdict.Engine.from_source(BUNDLE)

    def interrupt(r: verdict.EvaluationResult) -> None:
        raise KeyboardInterrupt

    engine.on_decision(interrupt)
    with pytest.raises(KeyboardInterrupt):
        engine.evaluate({})
    assert engine.observer_errors == 0


def test_refused_requests_reach_no_observer() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    seen: list[object] = []
    engine.on_decision(seen.append)
    with pytest.raises(verdict.RequestError):
        engine.evaluate({"bogus": 1})
    assert seen == []


def test_on_decision_takes_callables_only() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    with pytest.raises(TypeError, match="takes a callable"):
        engine.on_decision(42)  # type: ignore[type-var]


def test_an_engine_and_its_observer_cycle_are_collected() -> None:
    engine = verdict.Engine.from_source(BUNDLE)
    engine.on_decision(lambda r: engine.bundle_id)  # the closure refers back to the engine
    ref = weakref.ref(engine) if _weakrefable(engine) else None
    del engine
    gc.collect()
    if ref is not None:
        assert ref() is None


def _weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False
