"""Verdict in-process: compiled, explained policy decisions (EMBEDDING.md).

    import verdict
    engine = verdict.Engine.load("bundle.verdict")
    result = engine.evaluate({"subject": {"role": "admin"}, "action": "update"})
    result.kind, result.allowed, result.reason, result.to_dict()

`Engine` evaluates on the Cranelift JIT (`backend="jit"`, the default), the bytecode VM
(`"vm"`) or the reference interpreter (`"interp"`, sources only); all give the same results as
`verdict eval`. `check` and `compile` are `verdict check --format json` and `verdict compile`.
`Engine.guard` and `Enforcer` enforce decisions around the service's own code. Bundles with
state decide against a store (`store=verdict.MemoryStore()` or `verdict.RedisStore(url)`) and
their holds are committed or released by the caller; externs are Python callables
(`externs={"no_pii": fn}`).
"""

from ._errors import CompileError, PolicyViolation, RequestError, StoreError, UnhandledDecision, VerdictError
from ._enforce import Enforcer, Guarded
from ._native import Decision, Engine, EvaluationResult, MemoryStore, RedisStore, __version__, check, compile

__all__ = [
    "CompileError",
    "Decision",
    "Enforcer",
    "Engine",
    "EvaluationResult",
    "Guarded",
    "MemoryStore",
    "PolicyViolation",
    "RedisStore",
    "RequestError",
    "StoreError",
    "UnhandledDecision",
    "VerdictError",
    "__version__",
    "check",
    "compile",
]
