"""The enforcement helpers of EMBEDDING.md (the PEP side): `Engine.guard` and `Enforcer`.

Both only call `Engine.evaluate` and dispatch on the result: no policy semantics live here.
Decisions of stateful bundles (holds to commit or release) come with the state support of the
runtime; the place where a guard will commit or release is marked below.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._errors import PolicyViolation, UnhandledDecision, VerdictError

if TYPE_CHECKING:
    from ._native import Engine, EvaluationResult

__all__ = ["Guarded", "Enforcer", "guard"]

T = TypeVar("T")

Context = Mapping[str, Any] | str | bytes
ContextArg = Context | Callable[..., Context] | None


class Guarded(NamedTuple, Generic[T]):
    """What a soft guard returns: the decision, and the function's value (None when the
    decision did not allow the call, which then did not run)."""

    result: EvaluationResult
    value: T | None


def _context(context: ContextArg, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Context:
    if callable(context):
        return context(*args, **kwargs)
    return context


def guard(engine: Engine, context: ContextArg, mode: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`Engine.guard(context=..., mode=...)`: see the method's documentation."""
    if mode not in ("hard", "soft"):
        raise ValueError(f'mode must be "hard" or "soft", not {mode!r}')
    if context is None:
        raise VerdictError("guard needs a context: a dict, JSON text, or a callable building one")
    hard = mode == "hard"

    def decide(args: tuple[Any, ...], kwargs: dict[str, Any]) -> EvaluationResult:
        return engine.evaluate(_context(context, args, kwargs))

    def refused(result: EvaluationResult) -> Guarded[Any]:
        if hard:
            raise PolicyViolation(result)
        return Guarded(result, None)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                result = decide(args, kwargs)
                if not result.allowed:
                    return refused(result)
                # Stateful bundles: commit the result's holds when this returns, release them
                # when it raises (LANGUAGE.md §5.2).
                value = await fn(*args, **kwargs)
                return value if hard else Guarded(result, value)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            result = decide(args, kwargs)
            if not result.allowed:
                return refused(result)
            # Stateful bundles: commit the result's holds when this returns, release them when
            # it raises (LANGUAGE.md §5.2).
            value = fn(*args, **kwargs)
            return value if hard else Guarded(result, value)

        return guarded

    return decorate


class Enforcer:
    """Dispatches every decision to the service's own handler for its kind (PolicyGate's PEP).

    `Enforcer(engine, handlers={"allow": run, "block": refuse, ...})`; calling it with a context
    (and any arguments for the handler) evaluates the context and returns
    `handlers[result.kind](result, *args, **kwargs)`. A kind with no handler raises
    `UnhandledDecision`: enforcement fails closed, it never falls through to another handler.
    """

    def __init__(self, engine: Engine, handlers: Mapping[str, Callable[..., Any]]) -> None:
        kinds = {*engine.effects, "not_applicable"}
        unknown = sorted(k for k in handlers if k not in kinds)
        if unknown:
            raise VerdictError(
                f"handlers for unknown decision kinds {unknown}; the bundle decides {sorted(kinds)}"
            )
        for kind, handler in handlers.items():
            if not callable(handler):
                raise TypeError(f"the handler for {kind!r} is not callable")
        self.engine = engine
        self.handlers = dict(handlers)

    def __call__(self, context: Context, *args: Any, **kwargs: Any) -> Any:
        result = self.engine.evaluate(context)
        handler = self.handlers.get(result.kind)
        if handler is None:
            raise UnhandledDecision(result, list(self.handlers))
        return handler(result, *args, **kwargs)

