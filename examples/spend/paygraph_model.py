"""A small model of paygraph's spend gate (`PolicyEngine.evaluate` / `commit_spend`).

Written from the behaviour described in shared/notes/REPLACED-SYSTEMS.md (the paygraph
section), not from paygraph's code, and independent of Verdict: it is the reference the
Verdict bundle in this folder is compared with. Python 3.11 standard library only.

What paygraph does, as modelled here:
- `evaluate(amount, vendor, justification=None, on_check=None, now=None)` runs the checks in
  a fixed order and stops at the first failure; it returns `approved`, `denial_reason` and
  `checks_passed` (the checks that passed before the failure, or all of them), calling
  `on_check(name, passed)` after each check.
- `commit_spend(amount, now=None)` adds the amount to every configured period; it is called
  only after the payment gateway succeeded, so a failed payment never consumes budget.
- Counters are floats, summed in commit order, and reset at the period boundaries of `now`:
  the hour's start, the calendar date, Monday 00:00, the 1st of the month 00:00.

One extension, which paygraph does not have: `hold(amount, now, ttl)` records an approved
amount whose payment is still pending. It counts in every budget until `now + ttl` (at that
instant it no longer counts) unless committed; this is how Verdict's `apply commit` holds
behave when the caller neither commits nor releases (LANGUAGE.md §5.2). An approval that is
neither committed nor held is simply forgotten (paygraph's "gateway failed").

Instead of one running float per period, the engine keeps the committed (and held) amounts
with their times, in the order they were recorded, and sums those that fall in the period of
`now` from 0.0 in that order: the same float additions in the same order as paygraph's
running counters (which restart from 0.0 at each boundary), so the same values to the bit,
and what lets a hold stop counting when it expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone


@dataclass(frozen=True)
class SpendPolicy:
    max_transaction: float
    daily_budget: float
    allowed_vendors: list[str] | None = None
    blocked_vendors: list[str] | None = None
    require_justification: bool = False
    hourly_budget: float | None = None
    weekly_budget: float | None = None
    monthly_budget: float | None = None


@dataclass
class PolicyResult:
    approved: bool
    denial_reason: str | None
    checks_passed: list[str]
    failed_check: str | None = None


@dataclass
class _Entry:
    time: datetime
    amount: float
    # None: committed for good; else the instant at which the hold stops counting.
    expires: datetime | None = None


def _period_start(period: str, now: datetime) -> datetime:
    """The start of the calendar period containing `now` (an aware UTC datetime)."""
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=now.weekday())  # Monday 00:00
    if period == "month":
        return day.replace(day=1)
    raise ValueError(period)


def _next_start(period: str, start: datetime) -> datetime:
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    raise ValueError(period)


@dataclass
class PolicyEngine:
    policy: SpendPolicy
    _ledger: list[_Entry] = field(default_factory=list)

    def spent(self, period: str, now: datetime) -> float:
        """What the counter of `period` holds at `now`."""
        start = _period_start(period, now)
        end = _next_start(period, start)
        total = 0.0
        for e in self._ledger:
            live = e.expires is None or now < e.expires
            if live and start <= e.time < end:
                total += e.amount
        return total

    def evaluate(self, amount, vendor, justification=None, on_check=None, now=None) -> PolicyResult:
        now = now or datetime.now(timezone.utc)
        p = self.policy
        passed: list[str] = []

        def fail(name: str, reason: str) -> PolicyResult:
            if on_check:
                on_check(name, False)
            return PolicyResult(False, reason, passed, name)

        def ok(name: str) -> None:
            passed.append(name)
            if on_check:
                on_check(name, True)

        if amount <= 0:
            return fail("positive_amount", f"Amount must be positive (got ${amount:.2f})")
        ok("positive_amount")
        if amount > p.max_transaction:
            return fail("amount_cap", f"Amount ${amount:.2f} exceeds limit of ${p.max_transaction:.2f}")
        ok("amount_cap")
        if p.allowed_vendors and not any(v.lower() in vendor.lower() for v in p.allowed_vendors):
            return fail("vendor_allowlist", f"Vendor '{vendor}' is not in the allowed list")
        ok("vendor_allowlist")
        if p.blocked_vendors and any(v.lower() in vendor.lower() for v in p.blocked_vendors):
            return fail("vendor_blocklist", f"Vendor '{vendor}' is blocked")
        ok("vendor_blocklist")
        ok("mcc_filter")  # reserved: always passes
        for period, budget, label in (
            ("hour", p.hourly_budget, "Hourly"),
            ("week", p.weekly_budget, "Weekly"),
            ("month", p.monthly_budget, "Monthly"),
        ):
            if budget is None:
                continue
            name = f"{label.lower()}_budget"
            spent = self.spent(period, now)
            if spent + amount > budget:
                return fail(name, f"{label} budget exhausted (${spent:.2f} / ${budget:.2f})")
            ok(name)
        spent_today = self.spent("day", now)
        if spent_today + amount > p.daily_budget:
            return fail("daily_budget", f"Daily budget exhausted (${spent_today:.2f} / ${p.daily_budget:.2f})")
        ok("daily_budget")
        if p.require_justification and not justification:
            return fail("justification", "Justification is required but was not provided")
        ok("justification")
        return PolicyResult(True, None, passed)

    def commit_spend(self, amount, now=None) -> None:
        now = now or datetime.now(timezone.utc)
        self._ledger.append(_Entry(now, amount))

    def hold(self, amount, now, ttl: timedelta) -> None:
        """The extension: an approved amount that counts until `now + ttl`, never committed."""
        self._ledger.append(_Entry(now, amount, now + ttl))
