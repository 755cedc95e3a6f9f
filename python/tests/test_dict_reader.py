"""The two readers of a `dict` context agree: plain decisions of bundles without state or externs
read the dict straight into the values of the bundle's paths (no request maps built), every
other evaluation builds the runtime's request from it (`Engine._evaluate_general`). On generated
dicts (missing paths, wrong types, nested lists and tuples, numbers of every kind, booleans
beside integers, the merged view's roots given in `data` and on top, values that are not JSON)
both give the same `to_dict()`, or both raise the same `RequestError`; on JSON-clean dicts both
also agree with the context given as JSON text."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
import verdict
from conftest import NOW, card_bundles

# Every kind of path the fast reader resolves: the merged view's roots (`subject`, `resource`,
# `action`, set on top or in `data`), `data` keys, list indices (`1` and `01` naming one element),
# a path and a longer one below it (`meta` and `meta.a.b`), numbers compared across int and
# float, booleans that must not equal 1, and templates that print what was read.
PATHS = """
bundle_id: reader
version: "1"
effects: [deny, review, allow]
policies:
  - id: roles
    default_effect: none
    rules:
      - id: admin
        effect: allow
        when: "subject.role == 'admin' and action in ['create', 'update']"
        reason_template: "admin {subject.id} on {resource.tags}"
      - id: owner
        effect: allow
        when: "resource.owner == subject.id"
      - id: tagged
        effect: review
        when: {kind: eq, field: resource.tags.1, value: locked}
      - id: tagged-01
        effect: deny
        when: {kind: eq, field: resource.tags.01, value: secret}
      - id: first-item
        effect: review
        when: "items[0].kind == 'x' or items[1] == true"
  - id: numbers
    default_effect: allow
    rules:
      - id: one
        effect: review
        when: {kind: eq, field: n, value: 1}
        reason_template: "n={n} flag={flag}"
      - id: true-flag
        effect: deny
        when: {kind: eq, field: flag, value: true}
      - id: big
        effect: review
        when: "n > 9007199254740992"
        reason_template: "big {n}"
      - id: in-list
        effect: review
        when: {kind: in, field: flag, value: [1, 2.5, "x"]}
  - id: shapes
    default_effect: none
    rules:
      - id: meta-deep
        effect: deny
        when: {kind: eq, field: meta.a.b, value: 2}
      - id: meta-whole
        effect: review
        when: {kind: eq, field: meta, value: {a: {b: 3}}}
        reason_template: "meta {meta}"
      - id: region
        effect: allow
        when: "exists(region) and not (region == 'us') and missing(subject.deleted)"
      - id: action-below
        effect: deny
        when: {kind: exists, field: action.x}
"""

# A run-time schema and required paths: a missing or mistyped value is refused by the gate.
SCHEMA = """
bundle "schema" {
  version "1"
  schema { amount: number, subject.id: string, tags: list<string>, ok: bool }
  required [amount, subject.id]
}

policy p {
  default deny
  rule small allow {
    when amount < 50 and ok == true and tags contains "a"
    reason f"amount {amount:.2f} for {subject.id}"
  }
}
"""

NUMBERS: list[Any] = [
    0, 1, -1, 2, 1.0, -0.0, 0.5, 2.5, 2**53, 2**53 + 1, float(2**53), 2**63 - 1, 2**63, 2**64 - 1, 2**64,
    -(2**63), 10**30, 1e300, True, False,
]
STRINGS = ["use", "v-1", "admin", "viewer", "create", "update", "u1", "locked", "secret", "x", "a", "us", "eu", "", "1", "é"]
KEYS = [
    "subject", "resource", "action", "role", "id", "tags", "owner", "vendor_id", "items", "kind", "n", "flag",
    "meta", "a", "b", "region", "deleted", "amount", "ok", "0", "1", "01", "x", "conditions_satisfied", "dpa-signed",
]
NOT_JSON: list[Any] = [{1, 2}, math.nan, math.inf, b"x", "\ud800", object(), 10**400]


def scalar(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.4:
        return rng.choice(NUMBERS)
    if pick < 0.85:
        return rng.choice(STRINGS)
    return None


def value(rng: random.Random, depth: int, bad: bool) -> Any:
    """A random value; with `bad`, sometimes one that is not JSON (or a non-str key)."""
    if bad and rng.random() < 0.03:
        return rng.choice(NOT_JSON)
    pick = rng.random()
    if depth > 3 or pick < 0.45:
        return scalar(rng)
    if pick < 0.7:
        items = [value(rng, depth + 1, bad) for _ in range(rng.randrange(4))]
        return tuple(items) if rng.random() < 0.2 else items
    out: dict[Any, Any] = {rng.choice(KEYS): value(rng, depth + 1, bad) for _ in range(rng.randrange(4))}
    if bad and rng.random() < 0.03:
        out[rng.choice([1, None, True])] = "k"
    return out


def context(rng: random.Random, bad: bool) -> dict[Any, Any]:
    """A context whose top-level keys are mostly the valid ones, with objects shaped like the
    bundles' paths more often than not."""
    ctx: dict[Any, Any] = {}
    for key in ("subject", "resource", "action", "data"):
        pick = rng.random()
        if pick < 0.3:
            continue
        if key == "action":
            ctx[key] = rng.choice(STRINGS) if pick < 0.85 else (None if not bad or pick < 0.95 else 3)
        elif pick < 0.85 or not bad:
            ctx[key] = {rng.choice(KEYS): value(rng, 1, bad) for _ in range(rng.randrange(5))}
            if key == "data" and rng.random() < 0.5:
                ctx[key][rng.choice(["subject", "resource", "action"])] = value(rng, 1, bad)
        else:
            ctx[key] = rng.choice([None, [], "s", 1])
    if bad and rng.random() < 0.03:
        ctx[rng.choice(["extra", 1])] = 1
    return ctx


def mutated(rng: random.Random, seed: dict[str, Any], bad: bool) -> dict[Any, Any]:
    """A copy of a context that decides something, with one value somewhere in it replaced by a
    random one or removed."""
    ctx = copy.deepcopy(seed)
    at: Any = ctx
    while True:
        keys = list(at) if isinstance(at, dict) else list(range(len(at))) if isinstance(at, list) else []
        if not keys:
            return ctx
        key = rng.choice(keys)
        if isinstance(at[key], (dict, list)) and at[key] and rng.random() < 0.6:
            at = at[key]
            continue
        if isinstance(at, dict) and rng.random() < 0.3:
            del at[key]
        else:
            at[key] = value(rng, 2, bad)
        return ctx


def run(evaluate: Any, ctx: Any) -> tuple[str, str]:
    try:
        return "decided", json.dumps(evaluate(ctx, now=NOW).to_dict(), ensure_ascii=False)
    except verdict.RequestError as e:
        return "refused", str(e)


def card_bundle() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Decision Card bundle with a card scope (`action` and `resource.vendor_id` read), and
    its cases' contexts."""
    for entry in card_bundles():
        if "card_scope" in entry["bundle"] and entry["bundle"]["policies"][0]["rules"]:
            return entry["bundle"], [c["context"] for c in entry["cases"]]
    raise AssertionError("no Decision Card bundle with a card scope in the corpus")


def bundles() -> dict[str, tuple[str, str, list[dict[str, Any]]]]:
    """Each bundle with contexts it decides in more than one way, for the generator to vary."""
    card, card_contexts = card_bundle()
    paths_seeds = [
        {"subject": {"role": "admin", "id": "u1"}, "action": "update", "resource": {"tags": ["a", "locked"]}},
        {"subject": {"role": "viewer", "id": "u1"}, "resource": {"owner": "u1", "tags": ["secret", "b"]}},
        {"data": {"n": 1, "flag": True, "meta": {"a": {"b": 3}}, "items": [{"kind": "x"}], "region": "eu"}},
        {"data": {"subject": {"role": "admin"}, "action": "create", "resource": {"tags": ["a", "secret"]}}},
    ]
    schema_seeds = [
        {"subject": {"id": "u1"}, "data": {"amount": 10, "ok": True, "tags": ["a", "b"]}},
        {"data": {"subject": {"id": "u2"}, "amount": 12.5, "ok": False, "tags": []}},
    ]
    return {
        "paths": (PATHS, "yaml", paths_seeds),
        "schema": (SCHEMA, "verdict", schema_seeds),
        "card": (json.dumps(card), "json", card_contexts),
    }


@pytest.mark.parametrize("backend", ["jit", "vm"])
@pytest.mark.parametrize("name", ["paths", "schema", "card"])
def test_both_readers_agree(name: str, backend: str) -> None:
    text, form, seeds = bundles()[name]
    engine = verdict.Engine.from_source(text, form=form, backend=backend)
    rng = random.Random(f"{name}-{backend}")
    fast = refused = 0
    outcomes: set[str] = set()
    for i in range(1500):
        bad = i % 3 == 0
        ctx = context(rng, bad) if i % 2 else mutated(rng, rng.choice(seeds), bad)
        got, want = run(engine.evaluate, ctx), run(engine._evaluate_general, ctx)
        assert got == want, f"case {i}: {ctx!r}"
        if engine._prepares(ctx):
            fast += 1
            assert got[0] == "decided", f"case {i}: read directly, refused by the general reader: {ctx!r}"
        if got[0] == "refused":
            refused += 1
        else:
            outcomes.add(json.loads(got[1])["decision"]["kind"])
        if not bad:
            text_form = run(engine.evaluate, json.dumps(ctx))
            assert got == text_form, f"case {i} as JSON text: {ctx!r}"
    # The generator reaches both readers and more than one decision.
    assert fast > 500 and refused > 50 and len(outcomes) > 1, (fast, refused, outcomes)


def test_booleans_are_not_integers() -> None:
    engine = verdict.Engine.from_source(PATHS, form="yaml")
    for flag, rule in ((True, "true-flag"), (1, "in-list"), (1.0, "in-list"), (2.5, "in-list"), (False, None)):
        ctx = {"data": {"flag": flag}}
        r = engine.evaluate(ctx, now=NOW)
        assert r.to_dict() == engine._evaluate_general(ctx, now=NOW).to_dict()
        assert r.rule_id == rule, flag
    r = engine.evaluate({"data": {"n": True, "flag": 1}}, now=NOW)
    assert (r.kind, r.rule_id) == ("review", "in-list")
    r = engine.evaluate({"data": {"n": 1, "flag": True}}, now=NOW)
    assert (r.kind, r.rule_id, r.reason) == ("review", "one", "n=1 flag=True")
    r = engine.evaluate({"data": {"n": 1.0, "flag": 1}}, now=NOW)
    assert (r.rule_id, r.reason) == ("one", "n=1.0 flag=1")


def test_the_merged_view() -> None:
    engine = verdict.Engine.from_source(PATHS, form="yaml")
    cases = [
        # `subject` on top wins over `data.subject`; null on top falls back to `data`.
        ({"subject": {"role": "admin", "id": "u1"}, "action": "update", "data": {"subject": {"role": "viewer"}}}, "admin"),
        ({"subject": {"role": "viewer"}, "action": "update", "data": {"subject": {"role": "admin"}}}, None),
        ({"subject": None, "action": "update", "data": {"subject": {"role": "admin", "id": "u2"}}}, "admin"),
        ({"action": None, "data": {"action": "create", "subject": {"role": "admin"}}}, "admin"),
        # A path below `action` steps into the string when `action` is set.
        ({"data": {"action": {"x": 1}}}, "action-below"),
        ({"action": "create", "data": {"action": {"x": 1}}}, None),
        ({"resource": {"tags": ["a", "secret"]}, "data": {"resource": {"tags": ["a", "locked"]}}}, "tagged-01"),
        ({"resource": {"tags": ("a", "locked")}}, "tagged"),
        ({"data": {"meta": {"a": {"b": 3}}}}, "meta-whole"),
        ({"data": {"meta": {"a": {"b": 2, "c": [1]}}}}, "meta-deep"),
        ({"data": {"meta": {"a": ["x", "y"]}}}, None),
        ({"data": {"items": [{"kind": "y"}, True]}}, "first-item"),
        ({"data": {"items": [{"kind": "y"}, 1]}}, None),
    ]
    for ctx, rule in cases:
        assert engine._prepares(ctx), ctx
        r = engine.evaluate(ctx, now=NOW)
        got = r.to_dict()
        assert got == engine._evaluate_general(ctx, now=NOW).to_dict(), ctx
        assert got == engine.evaluate(json.dumps(ctx), now=NOW).to_dict(), ctx
        assert r.rule_id == rule, (ctx, got)


def test_refused_contexts_take_the_general_reader() -> None:
    engine = verdict.Engine.from_source(PATHS, form="yaml")
    for ctx in (
        {"extra": 1},
        {1: 2},
        {"subject": "admin"},
        {"action": 3},
        {"action": "\ud800"},
        {"data": []},
        {"data": None},
        {"subject": {"role": "admin"}, "data": {}, "other": None},
        {"data": {"region": {1, 2}}},
        {"data": {"meta": {"a": {"b": math.nan}}}},
        {"resource": {"tags": ["a", b"x"]}},
    ):
        assert not engine._prepares(ctx), ctx
        with pytest.raises(verdict.RequestError) as fast:
            engine.evaluate(ctx, now=NOW)
        with pytest.raises(verdict.RequestError) as general:
            engine._evaluate_general(ctx, now=NOW)
        assert str(fast.value) == str(general.value)
    # Null `subject`, `resource` and `action` are absent.
    ctx = {"subject": None, "resource": None, "action": None, "data": {"subject": {"role": "admin"}, "action": "update"}}
    assert engine._prepares(ctx)
    assert engine.evaluate(ctx, now=NOW).rule_id == "admin"
    # What no path reaches is not read by either reader.
    ctx = {"data": {"elsewhere": {1, 2}, "items": [{"kind": "y", "z": math.nan}]}, "subject": {"name": object()}}
    assert engine._prepares(ctx)
    assert engine.evaluate(ctx, now=NOW).to_dict() == engine._evaluate_general(ctx, now=NOW).to_dict()


def test_a_read_leaves_nothing_behind() -> None:
    """The fast reader overwrites the values of the thread's last read in place: a path the next
    context does not set is missing, whatever the last context (of this engine or another,
    decided or refused halfway through) set."""
    engine = verdict.Engine.from_source(PATHS, form="yaml")
    other_text, other_form, other_seeds = bundles()["schema"]
    other = verdict.Engine.from_source(other_text, form=other_form)
    admin = {"subject": {"role": "admin", "id": "u1"}, "action": "update", "resource": {"tags": ["a", "locked", "x"]}}
    steps: list[tuple[dict[str, Any], str | None]] = [
        (admin, "admin"),
        ({"action": "update"}, None),
        (admin, "admin"),
        # Refused after `subject.role` was read: the general reader says why.
        ({"subject": {"role": "admin"}, "action": "create", "resource": {"tags": ["a", b"x"]}}, "refused"),
        ({"action": "create"}, None),
        ({"resource": {"tags": ["a", "locked"]}}, "tagged"),
        ({"resource": {"tags": ["locked"]}}, None),
        ({"resource": {"tags": "al"}}, None),
        (admin, "admin"),
        (other_seeds[0], "other"),
        ({"resource": {"owner": "u9"}, "subject": {"id": "u9"}}, "owner"),
    ]
    for ctx, rule in steps:
        if rule == "other":
            assert other.evaluate(ctx, now=NOW).to_dict() == other._evaluate_general(ctx, now=NOW).to_dict()
            continue
        if rule == "refused":
            with pytest.raises(verdict.RequestError):
                engine.evaluate(ctx, now=NOW)
            continue
        r = engine.evaluate(ctx, now=NOW)
        assert r.to_dict() == engine._evaluate_general(ctx, now=NOW).to_dict(), ctx
        assert r.rule_id == rule, (ctx, r.to_dict())
