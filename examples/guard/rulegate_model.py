"""A small model of RuleGate's `check` and `check_all` for the ruleset in this folder.

Written from the RuleGate section of shared/notes/REPLACED-SYSTEMS.md and independent of
Verdict. Python 3.11 standard library only.

RuleGate, as modelled: a ruleset is a tuple of named predicates over a context (`args`,
`kwargs`, `meta`); all must pass. `check` stops at the first failing predicate, `check_all`
runs every predicate. A predicate that raises counts as a violation (fail closed) and is listed
as `"name (raised: ExcType: message)"`. A decision has `allowed`/`blocked`, `violated_rules` (in
ruleset order), `evaluated_count` (predicates run: up to and including the first failure for
`check`, all of them for `check_all`) and the message `"Policy violation: a, b"` (None when
allowed: the notes give no text for that case).

The host checks (`no_pii`, `safe_path`, `within_quota`, `toxicity`) are functions the caller
supplies; `Host` builds them from a case's mocks: a constant result, or `{"error": "ExcType:
message"}` to raise that built-in exception. The clock is injected (`now`), as RuleGate's
predicates would read it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")
ALLOWED_TOOLS = ("search_docs", "read_file", "send_report")


@dataclass
class Context:
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class Rule:
    name: str
    predicate: Callable[[Context], bool]


@dataclass
class Decision:
    allowed: bool
    violated_rules: list[str]
    evaluated_count: int
    message: str | None

    @property
    def blocked(self) -> bool:
        return not self.allowed


class Host:
    """The host functions of one case. A raised exception carries `.extern`, the function's
    name; `calls` records every call in order."""

    def __init__(self, mocks: dict[str, Any]) -> None:
        self.mocks = mocks
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        mocks = self.__dict__["mocks"]
        if name not in mocks:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self.__dict__["calls"].append({"name": name, "args": list(args)})
            result = mocks[name]
            if isinstance(result, dict) and set(result) == {"error"}:
                exc_type, _, message = result["error"].partition(": ")
                exc = getattr(builtins, exc_type)(message)
                exc.extern = name
                raise exc
            return result

        return call


def ruleset(host: Host, now: datetime) -> tuple[Rule, ...]:
    local = now.astimezone(BERLIN)
    return (
        Rule("allowed_tool", lambda c: c.meta.get("tool") in ALLOWED_TOOLS),
        Rule("business_hours", lambda c: 9 <= local.hour < 17),
        Rule("no_pii", lambda c: host.no_pii(c.kwargs["query"])),
        Rule("safe_path", lambda c: host.safe_path(c.args[0])),
        Rule("within_quota", lambda c: host.within_quota(c.meta["user"])),
        Rule("low_toxicity", lambda c: host.toxicity(c.kwargs["query"]) < 0.5),
    )


def _run(rules: tuple[Rule, ...], ctx: Context, stop_at_first: bool) -> tuple[Decision, list[BaseException | None]]:
    violated: list[str] = []
    raised: list[BaseException | None] = []
    evaluated = 0
    for rule in rules:
        evaluated += 1
        try:
            ok = bool(rule.predicate(ctx))
            err = None
        except Exception as e:  # fail closed: a predicate that cannot run cannot allow
            ok = False
            err = e
        if not ok:
            if err is None:
                violated.append(rule.name)
            else:
                violated.append(f"{rule.name} (raised: {type(err).__name__}: {err})")
            raised.append(err)
            if stop_at_first:
                break
    message = f"Policy violation: {', '.join(violated)}" if violated else None
    return Decision(not violated, violated, evaluated, message), raised


def check(rules: tuple[Rule, ...], ctx: Context) -> tuple[Decision, list[BaseException | None]]:
    """RuleGate's `check` (stops at the first violation), with the exception behind each violation."""
    return _run(rules, ctx, stop_at_first=True)


def check_all(rules: tuple[Rule, ...], ctx: Context) -> tuple[Decision, list[BaseException | None]]:
    """RuleGate's `check_all` (every predicate), with the exception behind each violation."""
    return _run(rules, ctx, stop_at_first=False)
