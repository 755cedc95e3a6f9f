"""The enforcement helpers of EMBEDDING.md (the PEP side): `Engine.guard` and `Enforcer`.

Both only call `Engine.evaluate` and dispatch on the result: no policy semantics live here.
Decisions of stateful bundles may make holds (LANGUAGE.md §5.2): a guard commits them when the
guarded function returns and releases them when it raises or does not run; an `Enforcer` does
the same around its handler (unless `settle=False`: then the handler settles them).

Both take `now=`: the evaluation time (an aware datetime or RFC 3339 text) or a callable
returning one, called for the decision and again when its holds are committed or released (the
current time when omitted). A service with its own clock (or a test) passes it here, so that a
decision and its settling happen on the same clock: holds expire `hold_ttl` after the decision's
time, and committing them at a later clock's time would find them expired.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._errors import PolicyViolation, UnhandledDecision, VerdictError

if TYPE_CHECKING:
    from ._native import Engine, EvaluationResult

__all__ = ["Guarded", "Enforcer", "guard"]

T = TypeVar("T")

Context = Mapping[str, Any] | str | bytes
ContextArg = Context | Callable[..., Context] | None
Now = datetime | str | None
NowArg = Now | Callable[[], Now]


class Guarded(NamedTuple, Generic[T]):
    """What a soft guard returns: the decision, and the function's value (None when the
    decision did not allow the call, which then did not run)."""

    result: EvaluationResult
    value: T | None


def _context(context: ContextArg, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Context:
    if callable(context):
        return context(*args, **kwargs)
    return context


def _now(now: NowArg) -> Now:
    """The time `now=` gives at this moment."""
    return now() if callable(now) else now


def _release(result: EvaluationResult, error: BaseException | None, now: NowArg) -> None:
    """Releases a decision's holds; a release that fails while `error` is on its way out is
    added to that error's notes rather than hiding it."""
    if not result.holds:
        return
    try:
        result.release(now=_now(now))
    except Exception as e:
        if error is None:
            raise
        error.add_note(f"verdict: releasing the holds of decision {result.decision_id} failed: {e}")


def _settle_call(result: EvaluationResult, call: Callable[[], T], now: NowArg) -> T:
    """Runs the action a decision allowed: commits its holds when it returns, releases them
    when it raises."""
    try:
        value = call()
    except BaseException as e:
        _release(result, e, now)
        raise
    if result.holds:
        result.commit(now=_now(now))
    return value


def guard(
    engine: Engine, context: ContextArg, mode: str, now: NowArg = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`Engine.guard(context=..., mode=...)`: see the method's documentation."""
    if mode not in ("hard", "soft"):
        raise ValueError(f'mode must be "hard" or "soft", not {mode!r}')
    if context is None:
        raise VerdictError("guard needs a context: a dict, JSON text, or a callable building one")
    hard = mode == "hard"

    def decide(args: tuple[Any, ...], kwargs: dict[str, Any]) -> EvaluationResult:
        return engine.evaluate(_context(context, args, kwargs), now=_now(now))

    def refused(result: EvaluationResult) -> Guarded[Any]:
        # The call does not run: whatever the decision held for it is released.
        _release(result, None, now)
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
                try:
                    value = await fn(*args, **kwargs)
                except BaseException as e:
                    _release(result, e, now)
                    raise
                if result.holds:
                    result.commit(now=_now(now))
                return value if hard else Guarded(result, value)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            result = decide(args, kwargs)
            if not result.allowed:
                return refused(result)
            # Stateful bundles: commit the result's holds when this returns, release them when
            # it raises (LANGUAGE.md §5.2).
            value = _settle_call(result, lambda: fn(*args, **kwargs), now)
            return value if hard else Guarded(result, value)

        return guarded

    return decorate


class Enforcer:
    """Dispatches every decision to the service's own handler for its kind (PolicyGate's PEP).

    `Enforcer(engine, handlers={"allow": run, "block": refuse, ...})`; calling it with a context
    (and any arguments for the handler) evaluates the context and returns
    `handlers[result.kind](result, *args, **kwargs)`. A kind with no handler raises
    `UnhandledDecision`: enforcement fails closed, it never falls through to another handler.

    Stateful bundles: the decision's holds are committed when the handler returns and released
    when it raises (or when no handler takes the decision). With `settle=False` the handler
    settles them itself (`result.commit()` / `result.release()`), e.g. after a payment gateway
    answered asynchronously. `now=` is the clock, as for `Engine.guard`.
    """

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, Callable[..., Any]],
        *,
        settle: bool = True,
        now: NowArg = None,
    ) -> None:
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
        self.settle = settle
        self.now = now

    def __call__(self, context: Context, *args: Any, **kwargs: Any) -> Any:
        result = self.engine.evaluate(context, now=_now(self.now))
        handler = self.handlers.get(result.kind)
        if handler is None:
            error = UnhandledDecision(result, list(self.handlers))
            if self.settle:
                _release(result, error, self.now)
            raise error
        if not self.settle:
            return handler(result, *args, **kwargs)
        return _settle_call(result, lambda: handler(result, *args, **kwargs), self.now)

