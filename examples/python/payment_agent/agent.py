"""A payment agent with a budget (paygraph's spend gate), on Verdict with holds.

The agent pays merchants through a payment gateway. Before each payment it asks the bundle
(`bundle.verdict`: a per-transaction cap of $200 and a daily budget of $500 per agent); the payment
function is guarded with `engine.guard`, so:
- a refused payment raises `verdict.PolicyViolation` and never reaches the gateway;
- an approved payment holds its amount in the agent's `spend` series at once: a second payment
  decided while the first is still at the gateway sees it (paygraph counts committed spend only,
  so two concurrent approvals can overspend its budget; these cannot);
- the hold is committed when the gateway call returns (the money moved) and released when it
  raises (the card was declined): a failed payment gives its amount back to the budget.

The agent runs on its own clock (`now=` of the guard), so the decisions, and the commits and
releases of their holds, happen at the times the script gives them.

    python examples/python/payment_agent/agent.py                      # in-memory store
    python examples/python/payment_agent/agent.py --redis redis://127.0.0.1:6379/0 --prefix demo:

With `--redis`, the budget lives in Redis (`verdict.RedisStore`), shared by every agent process
and by `verdict serve --store` on the same Redis and prefix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
from pathlib import Path

import verdict

HERE = Path(__file__).resolve().parent


class PaymentDeclined(Exception):
    """The gateway refused the payment."""


class Gateway:
    """A stand-in for the payment provider: charges cards, declines the merchants it is told to,
    and can keep a payment in flight until the test of a race lets it go on."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, float]] = []
        self.declining: set[str] = set()
        self.paused: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._lock = threading.Lock()

    def pause(self, merchant: str) -> tuple[threading.Event, threading.Event]:
        """The next charge for `merchant` waits: returns (reached, resume)."""
        events = (threading.Event(), threading.Event())
        self.paused[merchant] = events
        return events

    def charge(self, merchant: str, amount: float) -> str:
        paused = self.paused.pop(merchant, None)
        if paused is not None:
            reached, resume = paused
            reached.set()
            # Hang guard: the script resumes it within milliseconds.
            if not resume.wait(timeout=60):
                raise PaymentDeclined(f"{merchant} timed out")
        if merchant in self.declining:
            raise PaymentDeclined(f"card declined by {merchant}")
        with self._lock:
            self.charges.append((merchant, amount))
            return f"ch_{len(self.charges)}"


class Clock:
    """The agent's clock: the time the script sets."""

    def __init__(self, start: str) -> None:
        self.time = dt.datetime.fromisoformat(start)

    def set(self, time: str) -> None:
        self.time = dt.datetime.fromisoformat(time)

    def now(self) -> dt.datetime:
        return self.time


class PaymentAgent:
    def __init__(self, agent_id: str, gateway: Gateway, clock: Clock, store: verdict.MemoryStore | verdict.RedisStore):
        self.agent_id = agent_id
        self.gateway = gateway
        self.clock = clock
        self.engine = verdict.Engine.load(HERE / "bundle.verdict", store=store)

        def context(merchant: str, amount: float, currency: str = "USD") -> dict[str, object]:
            return {
                "subject": {"id": agent_id},
                "action": "pay",
                "data": {"amount": amount, "merchant": merchant, "currency": currency},
            }

        @self.engine.guard(context=context, now=clock.now)
        def pay(merchant: str, amount: float, currency: str = "USD") -> str:
            return gateway.charge(merchant, amount)

        self.pay = pay

    def buy(self, merchant: str, amount: float, currency: str = "USD") -> str:
        """One purchase, reported as a line."""
        at = self.clock.now().strftime("%m-%d %H:%M")
        what = f"{at} {merchant} {currency} {amount:.2f}"
        try:
            return f"{what}: paid {self.pay(merchant, amount, currency)}"
        except verdict.PolicyViolation as e:
            return f"{what}: refused ({e.result.rule_id}): {e.result.reason}"
        except PaymentDeclined as e:
            return f"{what}: failed ({e}); hold released"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", help="a Redis URL: keep the budget in Redis instead of in memory")
    parser.add_argument("--prefix", default="payment-agent:", help="the Redis key prefix")
    args = parser.parse_args()
    store = verdict.RedisStore(args.redis, prefix=args.prefix) if args.redis else verdict.MemoryStore()

    gateway = Gateway()
    gateway.declining.add("gpu-cloud")
    clock = Clock("2025-03-20T10:00:00+00:00")
    agent = PaymentAgent("agent-7", gateway, clock, store)

    print(agent.buy("openai", 120))
    clock.set("2025-03-20T10:05:00+00:00")
    print(agent.buy("openai", 250))  # over the per-transaction cap
    print(agent.buy("casino", 10))  # not an approved merchant
    print(agent.buy("aws", 20, currency="EUR"))
    clock.set("2025-03-20T10:10:00+00:00")
    print(agent.buy("gpu-cloud", 180))  # declined by the gateway: the hold goes back
    print(agent.buy("aws", 180))

    # Two payments in flight at once: the first one's hold already counts for the second.
    clock.set("2025-03-20T11:00:00+00:00")
    reached, resume = gateway.pause("anthropic")
    first: list[str] = []

    def in_flight() -> None:
        try:
            first.append(agent.buy("anthropic", 150))
        finally:
            reached.set()  # a refused payment never reaches the gateway

    worker = threading.Thread(target=in_flight)
    worker.start()
    if not reached.wait(timeout=60):
        raise SystemExit("the first payment never got an answer")
    print(agent.buy("openai", 100))  # 120 + 180 spent and 150 held: over the budget
    resume.set()
    worker.join(timeout=60)
    gateway.paused.clear()
    print(*first)

    print(agent.buy("openai", 50))  # exactly the budget
    print(agent.buy("openai", 0.01))
    clock.set("2025-03-21T00:00:00+00:00")
    print(agent.buy("openai", 200))  # a new day, a new budget
    print(f"charged: {', '.join(f'{m} {a:.2f}' for m, a in gateway.charges)}")


if __name__ == "__main__":
    main()
