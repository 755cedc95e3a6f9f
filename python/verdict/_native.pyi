"""Type stubs of the extension module `verdict._native` (re-exported by `verdict`)."""

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar, overload

from ._enforce import Guarded

__version__: str

Backend = Literal["jit", "vm", "interp"]
Form = Literal["verdict", "yaml", "yml", "json"]
Context = Mapping[str, Any] | str | bytes | bytearray
ContextArg = Context | Callable[..., Context]
P = ParamSpec("P")
R = TypeVar("R")
Observer = TypeVar("Observer", bound=Callable[[EvaluationResult], object])
Externs = Mapping[str, Callable[..., Any]]
Now = datetime | str | None
NowArg = Now | Callable[[], Now]
Settled = Literal["committed", "released"]

class MemoryStore:
    """One process's state series, holds and decisions; give one to several engines to share it."""

    def __init__(self) -> None: ...

class RedisStore:
    """State series, holds and decisions in Redis, shared by every process and `verdict serve --store`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        connect_timeout: float | None = None,
        io_timeout: float | None = None,
    ) -> None: ...
    def ping(self) -> None: ...
    @property
    def prefix(self) -> str: ...

Store = MemoryStore | RedisStore

class Decision:
    """One policy's decision."""

    @property
    def kind(self) -> str: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def policy_id(self) -> str | None: ...
    @property
    def rule_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def codes(self) -> list[str]: ...
    @property
    def obligations(self) -> dict[str, Any]: ...
    def to_dict(self) -> dict[str, Any]: ...

class EvaluationResult:
    """The result of evaluating a bundle on one request; `to_dict()` is `verdict eval`'s JSON."""

    @property
    def kind(self) -> str: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def policy_id(self) -> str | None: ...
    @property
    def rule_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def codes(self) -> list[str]: ...
    @property
    def obligations(self) -> dict[str, Any]: ...
    @property
    def policy_decisions(self) -> list[Decision]: ...
    @property
    def trace(self) -> list[dict[str, Any]] | None: ...
    @property
    def decision_id(self) -> str | None: ...
    @property
    def holds(self) -> list[dict[str, Any]]: ...
    @property
    def matches(self) -> list[dict[str, Any]] | None: ...
    @property
    def rules_evaluated(self) -> int | None: ...
    @property
    def bundle_id(self) -> str: ...
    @property
    def bundle_version(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    def commit(self, *, now: Now = None) -> Settled | None: ...
    def release(self, *, now: Now = None) -> Settled | None: ...
    def to_dict(self) -> dict[str, Any]: ...

class Engine:
    """A compiled, loaded bundle; shareable between threads."""

    @staticmethod
    def load(
        path: str | os.PathLike[str],
        *,
        backend: Backend = "jit",
        form: Form | None = None,
        externs: Externs | None = None,
        store: Store | None = None,
        trusted_keys: str | list[str] | None = None,
    ) -> Engine: ...
    @staticmethod
    def from_source(
        text: str,
        form: Form | None = None,
        *,
        backend: Backend = "jit",
        externs: Externs | None = None,
        store: Store | None = None,
    ) -> Engine: ...
    @staticmethod
    def from_artifact(
        data: bytes,
        *,
        backend: Backend = "jit",
        externs: Externs | None = None,
        store: Store | None = None,
        trusted_keys: str | list[str] | None = None,
    ) -> Engine: ...
    def evaluate(
        self,
        context: Context,
        now: Now = None,
        trace: bool = False,
        exhaustive: bool = False,
        *,
        decision_id: str | None = None,
    ) -> EvaluationResult: ...
    def commit(self, decision_id: str, *, now: Now = None) -> Settled: ...
    def release(self, decision_id: str, *, now: Now = None) -> Settled: ...
    def on_decision(self, callback: Observer) -> Observer: ...
    @overload
    def guard(
        self, context: ContextArg | None = None, *, mode: Literal["hard"] = "hard", now: NowArg = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
    @overload
    def guard(
        self, context: ContextArg | None = None, *, mode: Literal["soft"], now: NowArg = None
    ) -> Callable[[Callable[P, R]], Callable[P, Guarded[R]]]: ...
    @property
    def observer_errors(self) -> int: ...
    @property
    def backend(self) -> Backend: ...
    @property
    def jit_fallback(self) -> str | None: ...
    @property
    def bundle_id(self) -> str: ...
    @property
    def bundle_version(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def effects(self) -> tuple[str, ...]: ...
    @property
    def stateful(self) -> bool: ...
    @property
    def externs(self) -> tuple[str, ...]: ...

def check(path_or_text: str | os.PathLike[str], form: Form | None = None) -> list[dict[str, Any]]: ...
def compile(path_or_text: str | os.PathLike[str], form: Form | None = None) -> bytes: ...
