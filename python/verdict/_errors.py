"""The exceptions of the `verdict` package.

Every exception Verdict raises on purpose is a `VerdictError`; catch that to handle them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._native import EvaluationResult

__all__ = ["VerdictError", "CompileError", "RequestError", "StoreError", "PolicyViolation", "UnhandledDecision"]


class VerdictError(Exception):
    """Something Verdict refuses: an unreadable artifact, an unsupported argument, ..."""


class CompileError(VerdictError):
    """A bundle does not compile.

    `diagnostics` holds every diagnostic as `verdict check --format json` writes it: dicts with
    `code`, `severity`, `message`, `file`, `line`, `column`, `end_line`, `end_column`, `policy`,
    `rule`, `related`, `help` and `witness`.
    """

    def __init__(self, message: str, diagnostics: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class RequestError(VerdictError, ValueError):
    """A request context (or an evaluation argument such as `now`) is refused.

    The message is the runtime's (unknown keys, wrong types, invalid JSON) or says which value of
    a dict context is not JSON, with its path.
    """


class StoreError(VerdictError):
    """A state store refused or failed a commit or release: the decision is unknown (never made,
    or expired and forgotten), expired, already settled the other way, or the store is
    unreachable. The message is the store's (`decision `d-1` was released`, ...)."""


class PolicyViolation(VerdictError):
    """A hard guard's decision did not allow the call; `result` is the decision."""

    def __init__(self, result: EvaluationResult) -> None:
        rule = f"rule {result.rule_id!r} of " if result.rule_id is not None else ""
        policy = f"policy {result.policy_id!r}" if result.policy_id is not None else "no policy"
        super().__init__(f"policy violation: {result.kind} by {rule}{policy}: {result.reason}")
        self.result = result


class UnhandledDecision(VerdictError):
    """An `Enforcer` got a decision kind it has no handler for (enforcement fails closed)."""

    def __init__(self, result: EvaluationResult, handled: list[str]) -> None:
        super().__init__(
            f"no handler for decision kind {result.kind!r} (handlers: {', '.join(handled) or 'none'})"
        )
        self.result = result
