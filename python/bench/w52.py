"""W52 from a Python dict: Verdict's `Engine.evaluate` against the Python peers, in one run.

W52 (shared/notes/PERFORMANCE.md, bench/src/lib.rs): the reference quickstart plus 50 filler rules
plus a locked-resource deny; three requests (admin update: first rule; viewer read of a locked
resource: scans everything; viewer `act49`: last filler). Every engine gets the request as a
Python dict and decides it:

- verdict: `Engine.evaluate(dict)` on the JIT and the VM (the YAML bundle below),
- policy-as-code-engine 0.2.1: `EvaluationContext.model_validate(dict)` + `PolicyEvaluator.evaluate`
  on the same YAML bundle,
- rulegate 0.3.0: `Engine.check` with W52 as predicates (the writes rules as one predicate that
  tries the 51 rules in order, the locked deny as a second),
- cedarpy: `is_authorized` with the W52 Cedar policies of bench/src/lib.rs, a pre-parsed
  `PolicySet` and `Entities`, the context built from the dict.

Each engine's decisions are checked first. Then, per request, 15 rounds in which every engine runs
a batch of calls (about budget / 15 seconds each); the figure is the median over an engine's batches
of its thread CPU time per call (the loop's own cost included for all).
Run it with `scripts/bench_python.sh`, which installs the peers in a separate virtualenv.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import verdict

REQUESTS: dict[str, dict[str, Any]] = {
    "admin-update": {"subject": {"id": "u1", "role": "admin"}, "action": "update", "resource": {"id": "r1", "tags": ["public"]}},
    "viewer-locked-read": {"subject": {"id": "u2", "role": "viewer"}, "action": "read", "resource": {"id": "r2", "tags": ["locked"]}},
    "viewer-act49": {"subject": {"id": "u3", "role": "viewer"}, "action": "act49", "resource": {"id": "r3", "tags": []}},
}
EXPECTED = {"admin-update": True, "viewer-locked-read": False, "viewer-act49": True}


def w52_yaml() -> str:
    """W52 in the reference format (policy-as-code-engine's and Verdict's YAML)."""
    rules = [
        "      - id: admin-writes\n        effect: allow\n        when:\n          kind: all_of\n          matchers:\n"
        "            - {kind: in, field: action, value: [create, update, delete]}\n"
        "            - {kind: eq, field: subject.role, value: admin}\n"
    ]
    for i in range(50):
        rules.append(
            f"      - id: filler-{i}\n        effect: allow\n        when:\n          kind: all_of\n          matchers:\n"
            f"            - {{kind: eq, field: action, value: act{i}}}\n"
            "            - {kind: eq, field: subject.role, value: viewer}\n"
        )
    return (
        "bundle_id: w52\nversion: '1'\npolicies:\n"
        "  - id: writes\n    default_effect: deny\n    rules:\n" + "".join(rules) +
        "  - id: locked\n    default_effect: allow\n    rules:\n"
        "      - id: locked\n        effect: deny\n        when: {kind: contains, field: resource.tags, value: locked}\n"
    )


def w52_cedar() -> str:
    """W52 in Cedar, as bench/src/lib.rs writes it."""
    s = ['permit(principal, action, resource) when { ["create", "update", "delete"].contains(context.action) && context.subject.role == "admin" };']
    for i in range(50):
        s.append(f'permit(principal, action, resource) when {{ context.action == "act{i}" && context.subject.role == "viewer" }};')
    s.append('forbid(principal, action, resource) when { context.resource.tags.contains("locked") };')
    return "\n".join(s)


def verdict_engine(backend: str) -> Callable[[dict[str, Any]], bool]:
    engine = verdict.Engine.from_source(w52_yaml(), form="yaml", backend=backend)
    assert engine.backend == backend
    evaluate = engine.evaluate
    return lambda ctx: evaluate(ctx).allowed


def policy_as_code_engine() -> Callable[[dict[str, Any]], bool]:
    from policy_as_code_engine.evaluator import PolicyEvaluator
    from policy_as_code_engine.loader import load_bundle_from_string
    from policy_as_code_engine.models import EvaluationContext

    bundle = load_bundle_from_string(w52_yaml(), fmt="yaml")
    evaluator = PolicyEvaluator()
    validate = EvaluationContext.model_validate
    return lambda ctx: evaluator.evaluate(bundle, validate(ctx)).decision.kind == "allow"


def rulegate_engine() -> tuple[Callable[[dict[str, Any]], bool], Callable[[], None]]:
    import rulegate

    write_rules: list[Callable[[dict[str, Any]], bool]] = [
        lambda kw: kw.get("action") in ("create", "update", "delete") and kw.get("subject", {}).get("role") == "admin"
    ]
    for i in range(50):
        write_rules.append(
            lambda kw, a=f"act{i}": kw.get("action") == a and kw.get("subject", {}).get("role") == "viewer"
        )

    def writes(ctx: rulegate.Context) -> bool:
        return any(rule(ctx.kwargs) for rule in write_rules)

    def not_locked(ctx: rulegate.Context) -> bool:
        return "locked" not in ctx.kwargs.get("resource", {}).get("tags", [])

    engine = rulegate.Engine()
    rule = rulegate.Rule("w52", "decide")
    engine.register(rule, rulegate.Ruleset(predicates=(writes, not_locked), mode=rulegate.Mode.SOFT))
    check = engine.check
    return (lambda ctx: check(rule, kwargs=ctx).allowed), engine.clear_all


def cedar_engine() -> Callable[[dict[str, Any]], bool]:
    import cedarpy

    policies = cedarpy.PolicySet.from_str(w52_cedar()) if hasattr(cedarpy, "PolicySet") else w52_cedar()
    entities = cedarpy.Entities.from_json_str("[]") if hasattr(cedarpy, "Entities") else "[]"
    allow = cedarpy.Decision.Allow
    is_authorized = cedarpy.is_authorized

    def decide(ctx: dict[str, Any]) -> bool:
        request = {
            "principal": 'User::"u"',
            "action": 'Action::"act"',
            "resource": 'Resource::"r"',
            "context": {
                "action": ctx.get("action", ""),
                "subject": ctx.get("subject", {}),
                "resource": ctx.get("resource", {}),
            },
        }
        return is_authorized(request, policies, entities).decision == allow

    return decide


def calibrate(fn: Callable[[dict[str, Any]], bool], ctx: dict[str, Any], seconds: float) -> int:
    """Calls per batch so that a batch takes about `seconds`."""
    n = 1
    while n < 1 << 22:
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn(ctx)
        if time.thread_time_ns() - t0 > seconds * 1e9:
            break
        n *= 2
    return n


def measure(engines: dict[str, Callable[[dict[str, Any]], bool]], ctx: dict[str, Any], budget_s: float, batches: int,
            between: Callable[[], None]) -> dict[str, float]:
    """ns per call for each engine: the median over batches. The engines' batches alternate, so
    that every engine meets the same conditions on a shared machine, and time is the thread's CPU
    time (`time.thread_time_ns`), which does not count the time other processes hold the CPU."""
    sizes = {name: calibrate(fn, ctx, budget_s / batches) for name, fn in engines.items()}
    per_call: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(batches):
        for name, fn in engines.items():
            n = sizes[name]
            gc.collect()
            t0 = time.thread_time_ns()
            for _ in range(n):
                fn(ctx)
            per_call[name].append((time.thread_time_ns() - t0) / n)
            between()
    return {name: statistics.median(v) for name, v in per_call.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.5, help="CPU seconds per engine and request (default 1.5)")
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    rulegate_check, rulegate_clear = rulegate_engine()
    engines: dict[str, Callable[[dict[str, Any]], bool]] = {
        "verdict-jit": verdict_engine("jit"),
        "verdict-vm": verdict_engine("vm"),
        "policy-as-code-engine": policy_as_code_engine(),
        "rulegate": rulegate_check,
        "cedarpy": cedar_engine(),
    }
    for name, fn in engines.items():
        for label, ctx in REQUESTS.items():
            assert fn(ctx) is EXPECTED[label], f"{name} decides {label} wrongly"

    figures: dict[str, dict[str, float]] = {name: {} for name in engines}
    for label, ctx in REQUESTS.items():
        # RuleGate's store keeps every decision: it is emptied after each batch.
        for name, ns in measure(engines, ctx, args.budget, args.batches, rulegate_clear).items():
            figures[name][label] = ns

    versions = {
        "python": platform.python_version(),
        "verdict": verdict.__version__,
        **{p: md.version(p) for p in ("policy-as-code-engine", "rulegate", "cedarpy")},
    }
    print(f"# W52 from a dict, median ns of thread CPU time per decision; {json.dumps(versions)}")
    peers = ["policy-as-code-engine", "rulegate", "cedarpy"]
    print("| request | verdict-jit | verdict-vm | " + " | ".join(peers) + " | " + " | ".join(f"{p} / jit" for p in peers) + " |")
    print("|---" * (3 + 2 * len(peers)) + "|")
    for label in REQUESTS:
        jit = figures["verdict-jit"][label]
        row = [label, f"{jit:.0f}", f"{figures['verdict-vm'][label]:.0f}"]
        row += [f"{figures[p][label]:.0f}" for p in peers]
        row += [f"{figures[p][label] / jit:.0f}×" for p in peers]
        print("| " + " | ".join(row) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "ns_per_decision": figures}, f, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
