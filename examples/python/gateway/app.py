"""An inference gateway with Verdict as its in-process PDP (PolicyGate's PEP pattern).

The service maps each HTTP request to facts (`facts`), asks the engine, and an `Enforcer`
dispatches the decision to the service's own handler for its kind: ALLOW runs the large model,
BLOCK refuses, REQUIRE_REVIEW queues the request for a reviewer, DEGRADE runs the small model.
Every decision is audited by an observer, tied to the request's correlation id. The handlers and
the facts are the service's; the policy lives in `bundle.verdict`.

A FastAPI service has the same shape: build the `Enforcer` once, call it in the route with the
facts of the request. This example is a WSGI app (standard library only):

    python examples/python/gateway/app.py              # demo: serves on a free port, sends requests, prints
    python examples/python/gateway/app.py --serve 8080 # serve on 127.0.0.1:8080
"""

from __future__ import annotations

import contextvars
import json
import re
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import verdict

HERE = Path(__file__).resolve().parent
PII = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|[\w.+-]+@[\w-]+\.[\w.]+")

Response = tuple[int, dict[str, Any]]

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")


def facts(body: dict[str, Any]) -> dict[str, Any]:
    """The policy-relevant facts of a request (the service decides what they are)."""
    prompt = str(body.get("prompt", ""))
    return {
        "subject": {"id": body.get("user")},
        "action": "infer",
        "data": {
            "user_tier": body.get("tier"),
            "model_host": body.get("model_host", "internal"),
            "data_classification": body.get("classification", "internal"),
            "contains_pii": bool(PII.search(prompt)),
            "tokens_requested": int(body.get("max_tokens", 256)),
        },
    }


def run_model(model: str, prompt: str, max_tokens: int) -> str:
    return f"[{model} model, {max_tokens} tokens] answer to {len(prompt)} characters"


# The service's handlers, one per decision kind.
def allow(r: verdict.EvaluationResult, body: dict[str, Any]) -> Response:
    return 200, {"model": "large", "completion": run_model("large", body["prompt"], body.get("max_tokens", 256))}


def block(r: verdict.EvaluationResult, body: dict[str, Any]) -> Response:
    return 403, {"error": r.reason, "codes": r.codes}


def require_review(r: verdict.EvaluationResult, body: dict[str, Any]) -> Response:
    ticket = f"review-{uuid.uuid4().hex[:8]}"
    return 202, {"status": "queued", "queue": r.obligations["reviewer_queue"], "ticket": ticket, "codes": r.codes}


def degrade(r: verdict.EvaluationResult, body: dict[str, Any]) -> Response:
    o = r.obligations
    return 200, {"model": o["model"], "completion": run_model(o["model"], body["prompt"], o["max_tokens"]), "codes": r.codes}


class Gateway:
    """The WSGI application: `POST /v1/completions` with a JSON body."""

    def __init__(self, bundle: Path = HERE / "bundle.verdict", audit: Callable[[str], None] = print) -> None:
        self.engine = verdict.Engine.load(bundle)
        self.enforce = verdict.Enforcer(
            self.engine,
            handlers={"allow": allow, "block": block, "require_review": require_review, "degrade": degrade},
        )
        self.audit = audit
        self.engine.on_decision(self.audit_event)

    def audit_event(self, r: verdict.EvaluationResult) -> None:
        """One audit line per decision: correlation id, decision, rule, codes, bundle identity."""
        event = {
            "correlation_id": correlation_id.get(),
            "decision": r.kind,
            "rule": r.rule_id,
            "codes": r.codes,
            "bundle": r.bundle_id,
            "version": r.bundle_version,
            "fingerprint": r.fingerprint,
        }
        self.audit(json.dumps(event))

    def handle(self, body: dict[str, Any], request_id: str | None = None) -> Response:
        correlation_id.set(request_id or uuid.uuid4().hex)
        try:
            return self.enforce(facts(body), body)
        except verdict.UnhandledDecision as e:
            # Fail closed: a decision the service has no handler for is a refusal.
            return 403, {"error": str(e)}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/v1/completions" or environ.get("REQUEST_METHOD") != "POST":
            status, payload = 404, {"error": "not found"}
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                if not isinstance(body, dict) or "prompt" not in body:
                    raise ValueError("a JSON object with a prompt")
                status, payload = self.handle(body, environ.get("HTTP_X_REQUEST_ID"))
            except (ValueError, verdict.RequestError) as e:
                status, payload = 400, {"error": str(e)}
        reasons = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
        start_response(f"{status} {reasons[status]}", [("Content-Type", "application/json")])
        return [json.dumps(payload).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Gateway, port: int = 0) -> WSGIServer:
    """Serves `app` on 127.0.0.1 (port 0: a free port) in a background thread."""
    server = make_server("127.0.0.1", port, app, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def post(port: int, body: dict[str, Any], request_id: str) -> Response:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


DEMO = [
    {"user": "u-1", "tier": "standard", "prompt": "Summarise our release notes", "classification": "internal"},
    {"user": "u-2", "tier": "standard", "prompt": "Summarise the merger memo", "classification": "restricted"},
    {"user": "u-3", "tier": "standard", "prompt": "Email jane@corp.example about it", "model_host": "external"},
    {"user": "u-4", "tier": "standard", "prompt": "Write a long report", "max_tokens": 8000},
    {"user": "u-5", "tier": "free", "prompt": "Hello"},
    {"user": "u-6", "tier": "platinum", "prompt": "Hello"},
]


def demo() -> None:
    server = serve(Gateway())
    port = server.server_address[1]
    try:
        for i, body in enumerate(DEMO):
            status, payload = post(port, body, f"req-{i}")
            print(status, json.dumps(payload, sort_keys=True))
    finally:
        server.shutdown()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        server = serve(Gateway(), int(sys.argv[2]))
        print(f"serving on http://127.0.0.1:{server.server_address[1]}/v1/completions", flush=True)
        threading.Event().wait()
    else:
        demo()
