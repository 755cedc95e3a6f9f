"""Regenerates expected.jsonl from requests.jsonl with the RuleGate model.

    python3 examples/guard/make_expected.py          # rewrite expected.jsonl
    python3 examples/guard/make_expected.py --check  # exit 1 if expected.jsonl differs

Each request `{"name", "now", "context": {"data": {"args", "kwargs", "meta"}}, "externs"}` is
checked by the model with `check` and `check_all`. Each expected line has both RuleGate results
as the model gives them, and what Verdict must answer, derived from them:

  decision    `verdict eval BUNDLE CONTEXT --now NOW --externs MOCKS` (RuleGate's `check`):
              kind "deny" when a predicate failed, else "allow"; matched_rule_id the first
              violated rule (null for an allow); reason the rule's reason
              "Policy violation: NAME" (RuleGate's `check` message), or, when the predicate
              raised, "extern error: EXTERN: ExcType: message" (EXTERN: the host function that
              raised, which is not always the rule's name), or the default's reason for an allow
  exhaustive  the same with `--exhaustive` (RuleGate's `check_all`): `matches` lists every
              violated rule in order, {"policy_id", "rule_id", "effect": "deny"}, or
              {"policy_id", "rule_id", "error": "extern error: …"} when it raised;
              `rules_evaluated` is check_all's evaluated_count
  extern_calls, exhaustive_extern_calls
              the host calls made, in order, without and with `--exhaustive`:
              {"name", "args"} (each rule calls at most one extern, once)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from rulegate_model import Context, Host, check, check_all, ruleset

HERE = Path(__file__).resolve().parent
POLICY = "tool-guard"
DEFAULT_REASON = "no rule matched; policy default_effect='allow'"


def rule_id(violation: str) -> str:
    return violation.split(" (raised: ", 1)[0]


def extern_error(err: BaseException) -> str:
    return f"extern error: {err.extern}: {type(err).__name__}: {err}"


def expected(req: dict) -> dict:
    now = datetime.fromisoformat(req["now"])
    if now.tzinfo is None:
        raise ValueError(f"`now` needs an offset: {req['now']}")
    ctx_json = req["context"]
    if set(ctx_json) != {"data"}:
        raise ValueError(f"{req['name']}: the context has only `data`")
    data = ctx_json["data"]
    ctx = Context(data["args"], data["kwargs"], data["meta"])
    host = Host(req["externs"])
    rules = ruleset(host, now)
    first, first_raised = check(rules, ctx)
    first_calls, host.calls = host.calls, []
    every, every_raised = check_all(rules, ctx)

    if first.allowed:
        decision = {"kind": "allow", "matched_rule_id": None, "reason": DEFAULT_REASON}
    else:
        name = rule_id(first.violated_rules[0])
        err = first_raised[0]
        reason = f"Policy violation: {name}" if err is None else extern_error(err)
        decision = {"kind": "deny", "matched_rule_id": name, "reason": reason}
    matches = []
    for v, err in zip(every.violated_rules, every_raised):
        m = {"policy_id": POLICY, "rule_id": rule_id(v)}
        if err is None:
            m["effect"] = "deny"
        else:
            m["error"] = extern_error(err)
        matches.append(m)
    return {
        "name": req["name"],
        "check": vars(first),
        "check_all": vars(every),
        "decision": decision,
        "extern_calls": first_calls,
        "exhaustive": {"matches": matches, "rules_evaluated": every.evaluated_count},
        "exhaustive_extern_calls": host.calls,
    }


def main() -> int:
    reqs = [json.loads(l) for l in (HERE / "requests.jsonl").read_text().splitlines() if l.strip()]
    text = "".join(json.dumps(expected(r)) + "\n" for r in reqs)
    target = HERE / "expected.jsonl"
    if "--check" in sys.argv[1:]:
        if target.read_text() != text:
            print(f"{target} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
