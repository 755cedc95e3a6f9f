"""A small model of the AI platform's tenant gate with its hand-made denial counter.

Written from the ADR section of shared/notes/REPLACED-SYSTEMS.md and independent of Verdict:
the platform evaluates a tenant's Python rules in order, the first that fires decides, and
"deny if more than 3 prior denies in the last hour" is done by hand with a per-subject counter
(in Redis: ZADD the time of every deny, ZCOUNT key (now-3600 now), an exclusive lower bound).
Python 3.11 standard library only.

The rules, in order:
  too-many-denials  the subject was denied more than 3 times in (now - 3600 s, now]
  blocked-model     data.model is a blocked model
  token-limit       data.max_tokens > 4096
otherwise allow. Every deny is recorded at its time, the lockout's own included. Times are
whole seconds since the epoch (the window is exact to the second: a deny exactly 3600 s old is
out, one made in the same second as the read is in).

A request without `subject.id` cannot select a counter: it fails closed, denied by the first
rule with the state error text of LANGUAGE.md §5.2, and records nothing.
"""

from __future__ import annotations

from collections import defaultdict

WINDOW = 3600
BLOCKED_MODELS = ("gpt-4-uncensored", "llama-jailbreak")
MAX_TOKENS = 4096


class DenialCounter:
    """Per-subject deny times, like a Redis sorted set scored by time."""

    def __init__(self) -> None:
        self._times: dict[str, list[int]] = defaultdict(list)

    def add(self, subject: str, t: int) -> None:
        self._times[subject].append(t)

    def count(self, subject: str, now: int) -> int:
        return sum(1 for t in self._times[subject] if now - WINDOW < t <= now)


class Gate:
    def __init__(self) -> None:
        self.denials = DenialCounter()

    def evaluate(self, context: dict, now: int) -> tuple[str, str | None, str]:
        """(kind, deciding rule or None, reason) for one request at `now`."""
        subject = (context.get("subject") or {}).get("id")
        data = context.get("data") or {}
        if subject is None:
            return "deny", "too-many-denials", "state error: key subject.id of 'denials' is missing"
        if self.denials.count(subject, now) > 3:
            decided = ("deny", "too-many-denials", "more than 3 denials in the last hour")
        elif data.get("model") in BLOCKED_MODELS:
            decided = ("deny", "blocked-model", "model is blocked for this tenant")
        elif isinstance(data.get("max_tokens"), (int, float)) and data["max_tokens"] > MAX_TOKENS:
            decided = ("deny", "token-limit", "max_tokens is over the tenant's limit of 4096")
        else:
            decided = ("allow", None, "no rule matched; policy default_effect='allow'")
        if decided[0] == "deny":
            self.denials.add(subject, now)
        return decided
