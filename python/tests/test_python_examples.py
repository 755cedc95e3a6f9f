"""The Python examples (`examples/python/`) run as their users run them: real processes, and the
gateway as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import verdict
from conftest import ROOT, RedisServer, fresh_prefix

EXAMPLES = ROOT / "examples" / "python"


def run(script: Path, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_bundles_check_clean() -> None:
    bundles = (
        EXAMPLES / "gateway" / "bundle.verdict",
        EXAMPLES / "agent_tool" / "bundle.yaml",
        EXAMPLES / "payment_agent" / "bundle.verdict",
    )
    for bundle in bundles:
        errors = [d for d in verdict.check(bundle) if d["severity"] != "info"]
        assert errors == [], bundle


def test_gateway_demo() -> None:
    lines = run(EXAMPLES / "gateway" / "app.py")
    responses = [line for line in lines if not line.startswith("{")]
    audit = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r.split(" ", 1)[0] for r in responses] == ["200", "403", "202", "200", "200", "403"]
    assert [(a["correlation_id"], a["decision"], a["rule"]) for a in audit] == [
        ("req-0", "allow", "standard"),
        ("req-1", "block", "restricted-data"),
        ("req-2", "require_review", "pii-to-external"),
        ("req-3", "degrade", "over-budget"),
        ("req-4", "degrade", "free-tier"),
        ("req-5", "block", "unknown-tier"),
    ]
    assert all(a["fingerprint"].startswith("sha256:") for a in audit)
    degraded = json.loads(responses[3].split(" ", 1)[1])
    assert degraded["model"] == "small" and "1000 tokens" in degraded["completion"]


def test_gateway_over_http() -> None:
    app = load(EXAMPLES / "gateway" / "app.py", "gateway_app")
    audit: list[str] = []
    gateway = app.Gateway(audit=audit.append)
    server = app.serve(gateway)
    port = server.server_address[1]
    try:
        status, body = app.post(port, {"tier": "enterprise", "prompt": "long", "max_tokens": 9000}, "e-1")
        assert (status, body["model"]) == (200, "large")
        status, body = app.post(port, {"tier": "standard", "prompt": "x", "classification": "confidential"}, "c-1")
        assert (status, body["error"]) == (403, "no rule matched; policy default_effect='block'")
        status, body = app.post(port, {"no": "prompt"}, "bad-1")
        assert status == 400
        assert [json.loads(a)["correlation_id"] for a in audit] == ["e-1", "c-1"]
    finally:
        server.shutdown()


def test_gateway_fails_closed_without_a_handler() -> None:
    app = load(EXAMPLES / "gateway" / "app.py", "gateway_app_partial")
    gateway = app.Gateway(audit=lambda line: None)
    gateway.enforce = verdict.Enforcer(gateway.engine, handlers={"allow": app.allow})
    status, body = gateway.handle({"tier": "free", "prompt": "hi"})
    assert status == 403 and "no handler for decision kind 'degrade'" in body["error"]


def test_agent_tool_demo() -> None:
    assert run(EXAMPLES / "agent_tool" / "agent.py") == [
        "search: 3 results",
        "search: refused (unbounded-search): a search returns at most 20 results",
        "read_file: <contents of workspace/notes.md>",
        "read_file: refused (outside-workspace): files outside the workspace are off limits",
        "send_email: sent 'Summary' to lead@example.com",
        "send_email: refused (external-recipient): mail leaves the company only with a human",
        "send_email: refused (secret-in-arguments): a call argument carries a credential",
        "decisions: {'allow': 3, 'deny': 4}",
    ]


PAYMENTS = [
    "03-20 10:00 openai USD 120.00: paid ch_1",
    "03-20 10:05 openai USD 250.00: refused (per_transaction_cap): Amount $250.00 exceeds the per-transaction cap of $200.00",
    "03-20 10:05 casino USD 10.00: refused (approved_merchant): Merchant 'casino' is not approved",
    "03-20 10:05 aws EUR 20.00: refused (currency): Only USD payments are allowed (got EUR)",
    "03-20 10:10 gpu-cloud USD 180.00: failed (card declined by gpu-cloud); hold released",
    "03-20 10:10 aws USD 180.00: paid ch_2",
    "03-20 11:00 openai USD 100.00: refused (daily_budget): Daily budget exhausted ($450.00 of $500.00 spent or held)",
    "03-20 11:00 anthropic USD 150.00: paid ch_3",
    "03-20 11:00 openai USD 50.00: paid ch_4",
    "03-20 11:00 openai USD 0.01: refused (daily_budget): Daily budget exhausted ($500.00 of $500.00 spent or held)",
    "03-21 00:00 openai USD 200.00: paid ch_5",
    "charged: openai 120.00, aws 180.00, anthropic 150.00, openai 50.00, openai 200.00",
]


def test_payment_agent_demo() -> None:
    # The declined payment's hold is released (10:10 aws 180 fits), the in-flight payment's hold
    # refuses the concurrent one (11:00 openai 100), and the budget is reached exactly.
    assert run(EXAMPLES / "payment_agent" / "agent.py") == PAYMENTS


def test_payment_agent_on_redis(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    script = EXAMPLES / "payment_agent" / "agent.py"
    assert run(script, "--redis", redis_server.url, "--prefix", prefix) == PAYMENTS
    # A second run on the same Redis and prefix finds the first run's spending: the budget is
    # shared by every process.
    again = run(script, "--redis", redis_server.url, "--prefix", prefix)
    assert again[0] == "03-20 10:00 openai USD 120.00: refused (daily_budget): Daily budget exhausted ($500.00 of $500.00 spent or held)"
