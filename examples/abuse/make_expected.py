"""Regenerates expected.jsonl from events.jsonl with the gate model (model.py).

    python3 examples/abuse/make_expected.py          # rewrite expected.jsonl
    python3 examples/abuse/make_expected.py --check  # exit 1 if expected.jsonl differs

Each expected line is `{"kind", "rule", "reason"}`: the decision's kind, its
`matched_rule_id` (null for the default) and its reason, to the character.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from model import Gate

HERE = Path(__file__).resolve().parent


def run(events: list[dict]) -> list[dict]:
    gate = Gate()
    out = []
    last = None
    for ev in events:
        t = datetime.fromisoformat(ev["now"])
        if t.tzinfo is None or t.microsecond:
            raise ValueError(f"`now` needs an offset and whole seconds: {ev['now']}")
        now = int(t.timestamp())
        if last is not None and now < last:
            raise ValueError(f"events out of time order at {ev['now']}")
        last = now
        kind, rule, reason = gate.evaluate(ev["context"], now)
        out.append({"kind": kind, "rule": rule, "reason": reason})
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
