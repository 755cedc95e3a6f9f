"""Regenerates expected.jsonl from events.jsonl with the paygraph model.

    python3 examples/spend/make_expected.py          # rewrite expected.jsonl
    python3 examples/spend/make_expected.py --check  # exit 1 if expected.jsonl differs

Each event `{"now", "context", "then"}` is decided by the model at `now` (converted to UTC,
the bundle's timezone), for the agent `context.subject.id` (one paygraph engine per agent,
like one wallet per agent). An approval is then committed (`commit_spend`: the gateway
succeeded), released (nothing: the gateway failed) or held (counts until `now + hold_ttl`).
Each expected line is what Verdict must say about that event:
  kind           "allow" or "deny"
  rule           the failed check (the deciding rule's id), or null for an allow
  reason         paygraph's denial_reason, or the policy default's reason for an allow
  checks_passed  paygraph's checks_passed without `mcc_filter` (see README.md)
  holds          the hold Verdict reports for an allow, [] for a deny
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from paygraph_model import PolicyEngine, SpendPolicy

HERE = Path(__file__).resolve().parent

POLICY = SpendPolicy(
    max_transaction=50.0,
    daily_budget=200.0,
    allowed_vendors=["aws", "openai"],
    blocked_vendors=["casino"],
    require_justification=True,
    hourly_budget=100.0,
    weekly_budget=400.0,
    monthly_budget=600.0,
)
HOLD_TTL = timedelta(minutes=10)
DEFAULT_REASON = "no rule matched; policy default_effect='allow'"


def parse_now(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"`now` needs an offset: {text}")
    return t.astimezone(timezone.utc)


def run(events: list[dict]) -> list[dict]:
    engines: dict[str, PolicyEngine] = {}
    out = []
    last = None
    for ev in events:
        now = parse_now(ev["now"])
        if last is not None and now < last:
            raise ValueError(f"events out of time order at {ev['now']}")
        last = now
        ctx = ev["context"]
        if set(ctx) - {"subject", "data"}:
            raise ValueError(f"unexpected context keys: {sorted(ctx)}")
        agent = ctx["subject"]["id"]
        data = ctx["data"]
        engine = engines.setdefault(agent, PolicyEngine(POLICY))
        amount = data["amount"]
        r = engine.evaluate(amount, data["vendor"], data.get("justification"), now=now)
        then = ev.get("then", "commit")
        if r.approved:
            if then == "commit":
                engine.commit_spend(amount, now=now)
            elif then == "hold":
                engine.hold(amount, now, HOLD_TTL)
            elif then != "release":
                raise ValueError(f"unknown `then`: {then}")
        out.append(
            {
                "kind": "allow" if r.approved else "deny",
                "rule": r.failed_check,
                "reason": DEFAULT_REASON if r.approved else r.denial_reason,
                "checks_passed": [c for c in r.checks_passed if c != "mcc_filter"],
                "holds": [{"state": "spend", "key": [agent], "amount": amount}] if r.approved else [],
            }
        )
    return out


def main() -> int:
    events = [json.loads(l) for l in (HERE / "events.jsonl").read_text().splitlines() if l.strip()]
    text = "".join(json.dumps(r) + "\n" for r in run(events))
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
