"""An agent's tools guarded by Verdict (RuleGate's decorators, one bundle for every tool).

Each tool is decorated with `engine.guard`: the decorated function runs only when the bundle
allows the call. The context of a call is RuleGate's (`args`, `kwargs`, `meta`). `search` and
`read_file` are hard guards (a refusal raises `verdict.PolicyViolation`, which the agent loop
reports back to the model); `send_email` is a soft guard (it returns `verdict.Guarded(result,
value)` and never raises for a decision). An observer counts decisions, as RuleGate's listeners do.

    python examples/python/agent_tool/agent.py
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import verdict

HERE = Path(__file__).resolve().parent
AGENT = "research-assistant"

engine = verdict.Engine.load(HERE / "bundle.yaml")
decisions: Counter[str] = Counter()
engine.on_decision(lambda r: decisions.update([r.kind]))


def call(tool: str) -> Callable[..., dict[str, Any]]:
    """The context of a call of `tool`: its arguments as RuleGate sees them."""

    def context(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"data": {"args": list(args), "kwargs": kwargs, "meta": {"tool": tool, "agent": AGENT}}}

    return context


@engine.guard(context=call("search"))
def search(query: str, max_results: int = 5) -> list[str]:
    return [f"result {i} for {query!r}" for i in range(max_results)]


@engine.guard(context=call("read_file"))
def read_file(path: str) -> str:
    return f"<contents of {path}>"


@engine.guard(context=call("send_email"), mode="soft")
def send_email(to: str, subject: str, body: str = "") -> str:
    return f"sent {subject!r} to {to}"


PLAN: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
    (search, ("policy engines",), {"max_results": 3}),
    (search, ("everything",), {"max_results": 500}),
    (read_file, ("workspace/notes.md",), {}),
    (read_file, ("/etc/passwd",), {}),
    (send_email, ("lead@example.com", "Summary"), {"body": "Three engines compared."}),
    (send_email, ("someone@elsewhere.org", "Summary"), {"body": "Three engines compared."}),
    (send_email, ("lead@example.com", "Key"), {"body": "use sk-abcdefghijklmnop1234"}),
]


def run_plan() -> list[str]:
    """Runs the agent's plan; every outcome as a line (what the agent would feed back)."""
    lines = []
    for tool, args, kwargs in PLAN:
        name = tool.__name__
        try:
            outcome = tool(*args, **kwargs)
        except verdict.PolicyViolation as e:
            lines.append(f"{name}: refused ({e.result.rule_id or 'default'}): {e.result.reason}")
            continue
        if isinstance(outcome, verdict.Guarded):
            if outcome.result.allowed:
                lines.append(f"{name}: {outcome.value}")
            else:
                lines.append(f"{name}: refused ({outcome.result.rule_id}): {outcome.result.reason}")
        else:
            lines.append(f"{name}: {outcome if isinstance(outcome, str) else f'{len(outcome)} results'}")
    lines.append(f"decisions: {dict(sorted(decisions.items()))}")
    return lines


if __name__ == "__main__":
    print("\n".join(run_plan()))
