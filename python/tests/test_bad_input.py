"""Bad input raises a clear exception (a `RequestError`, the runtime's message where the
runtime refuses) and never crashes the interpreter; what the bundle does not read is not read."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import pytest
import verdict

BUNDLE = """
bundle b { version "1" }

policy p {
  default deny

  rule r allow {
    when subject.role == "admin" and resource.tags[1] == "x" and region == "eu"
  }
}
"""

OK = {"subject": {"role": "admin"}, "resource": {"tags": ["a", "x"]}, "data": {"region": "eu"}}


@pytest.fixture(scope="module", params=["jit", "vm", "interp"])
def engine(request: pytest.FixtureRequest) -> verdict.Engine:
    return verdict.Engine.from_source(BUNDLE, backend=request.param)


def refused(engine: verdict.Engine, context: object, match: str) -> None:
    with pytest.raises(verdict.RequestError, match=match) as e:
        engine.evaluate(context)  # type: ignore[arg-type]
    assert isinstance(e.value, verdict.VerdictError) and isinstance(e.value, ValueError)


def test_the_good_context(engine: verdict.Engine) -> None:
    assert engine.evaluate(OK).kind == "allow"


def test_non_dict_contexts(engine: verdict.Engine) -> None:
    # JSON-like values: the runtime's own refusal.
    refused(engine, [OK], "must be a JSON object, not list")
    refused(engine, (1, 2), "must be a JSON object, not list")
    refused(engine, 3, "must be a JSON object, not number")
    refused(engine, None, "must be a JSON object, not null")
    refused(engine, True, "must be a JSON object, not bool")
    # Not JSON at all.
    refused(engine, {1, 2}, "must be a dict, or JSON text as str or bytes, not `set`")
    refused(engine, object(), "not `object`")
    # JSON text that is not an object, or not JSON.
    refused(engine, "[1]", "must be a JSON object, not list")
    refused(engine, b"{", "invalid JSON")
    refused(engine, '{"subject": }', "invalid JSON: expected value at line 1 column 13")
    refused(engine, b"\xff", "invalid UTF-8")


def test_runtime_refusals_are_the_runtimes(engine: verdict.Engine) -> None:
    for context in ({"extra": 1}, {"subject": "admin"}, {"action": 3}, {"data": []}, {"resource": [1]}):
        from_text = None
        try:
            engine.evaluate(json.dumps(context))
        except verdict.RequestError as e:
            from_text = str(e)
        assert from_text is not None
        refused(engine, context, "^" + _re(from_text) + "$")
    refused(engine, {"extra": 1}, "unknown key `extra` in request context")
    refused(engine, {1: 2}, "keys must be strings, not `int`")


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_non_json_values_where_the_bundle_reads(engine: verdict.Engine) -> None:
    cases = [
        ({"subject": {"role": {"admin"}}}, "`subject.role`: `set` is not a JSON value \\(use a list\\)"),
        ({"subject": {"role": frozenset()}}, "`frozenset` is not a JSON value"),
        ({"subject": {"role": b"admin"}}, "`subject.role`: `bytes` is not a JSON value \\(decode it to str\\)"),
        ({"subject": {"role": math.nan}}, "`nan` is not a JSON number"),
        ({"subject": {"role": math.inf}}, "`inf` is not a JSON number"),
        ({"subject": {"role": -math.inf}}, "`-inf` is not a JSON number"),
        ({"subject": {"role": decimal.Decimal("1.5")}}, "`Decimal` is not a JSON value"),
        ({"subject": {"role": dt.datetime(2026, 1, 1)}}, "`datetime` is not a JSON value \\(format it"),
        ({"subject": {"role": 10**400}}, "an integer too large for a JSON number"),
        ({"subject": {"role": "\ud800"}}, "lone surrogate"),
        ({"resource": {"tags": ["a", {1, 2}]}}, "`resource.tags.1`: `set`"),
        ({"data": {"region": {"nested": [object()]}}}, "`data.region.nested.0`: `object` is not a JSON value"),
        ({"data": {"region": {2: "x"}}}, "`data.region`: object keys must be strings, not `int`"),
    ]
    for context, match in cases:
        refused(engine, context, match)


def test_deep_and_cyclic_values_are_refused(engine: verdict.Engine) -> None:
    cyclic: dict = {}
    cyclic["again"] = cyclic
    refused(engine, {"data": {"region": cyclic}}, "nested deeper than 128 levels")
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    refused(engine, {"data": {"region": deep}}, "nested deeper than 128 levels")
    shallow: list = []
    for _ in range(100):
        shallow = [shallow]
    assert engine.evaluate({"data": {"region": shallow}}).kind == "deny"


def test_large_integers_are_read_as_json_text_reads_them(engine: verdict.Engine) -> None:
    for big in (2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), 10**30):
        context = {"data": {"region": big}}
        got = engine.evaluate(context, trace=True).to_dict()
        assert got == engine.evaluate(json.dumps(context), trace=True).to_dict(), big


def test_what_the_bundle_does_not_read_is_not_read(engine: verdict.Engine) -> None:
    # Values no path reaches are never converted: they may be anything, and cost nothing.
    noisy = {
        "subject": {"role": "admin", "photo": b"\x00" * 1000, "groups": {"a", "b"}, "self": object()},
        "resource": {"tags": ["a", "x", {1, 2}], "blob": math.nan},
        "data": {"region": "eu", "unused": {"deep": object()}, 7: "non-string key at an unread place"},
    }
    assert engine.evaluate(noisy).kind == "allow"


def test_now_refusals(engine: verdict.Engine) -> None:
    with pytest.raises(verdict.RequestError, match="naive datetime"):
        engine.evaluate(OK, now=dt.datetime(2026, 1, 1))
    with pytest.raises(verdict.RequestError, match="not an RFC 3339 date-time"):
        engine.evaluate(OK, now="2026-01-01")
    with pytest.raises(verdict.RequestError, match="not an RFC 3339 date-time"):
        engine.evaluate(OK, now="2026-01-01T00:00:00")
    with pytest.raises(verdict.RequestError, match="must be an aware datetime or an RFC 3339 string, not `int`"):
        engine.evaluate(OK, now=1700000000)  # type: ignore[arg-type]
    with pytest.raises(verdict.RequestError, match="not `date`"):
        engine.evaluate(OK, now=dt.date(2026, 1, 1))  # type: ignore[arg-type]


def test_argument_types(engine: verdict.Engine) -> None:
    with pytest.raises(TypeError):
        engine.evaluate(OK, trace="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.evaluate()  # type: ignore[call-arg]


def test_an_exception_inside_a_dict_lookup_is_raised_not_a_crash(engine: verdict.Engine) -> None:
    class Key(str):
        """A str subclass whose equality raises: dict lookups of `role` meet it on a hash collision."""

        def __hash__(self) -> int:
            return hash("role")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

    context = {"subject": {Key("x"): 1}}
    with pytest.raises(RuntimeError, match="boom"):
        engine.evaluate(context)
