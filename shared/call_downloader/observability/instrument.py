"""Instrumentation of CloudEvent handling: a scope with the event's ids and trace for the log
lines, the in-progress gauge, the handled counter by outcome, the duration histogram, and one
log line per event.

`observe_event("analyze-duration")` wraps a pipeline stage's `handle(event)`; it runs wherever
the stage runs (functions-framework behind a Knative trigger, the dispatcher in-process).
A handler that returns without effect (a duplicate or a stale event) calls `note_skipped()`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from call_downloader.observability import context
from call_downloader.observability.metrics import event_type_label, m

log = logging.getLogger("call_downloader.events")

F = TypeVar("F", bound=Callable[..., Any])


def _attr(event: Any, name: str) -> Any:
    try:
        return event[name]
    except (KeyError, TypeError, AttributeError):
        return None


def event_fields(event: Any) -> dict[str, Any]:
    """The scope fields of a CloudEvent (call id = subject, trace from `traceparent`)."""
    return {
        "event_id": _attr(event, "id"),
        "event_type": _attr(event, "type"),
        "call_id": _attr(event, "subject"),
        "traceparent": _attr(event, "traceparent"),
    }


def note_skipped() -> None:
    """The event being handled had nothing left to do (duplicate or stale)."""
    context.bind(outcome="skipped")


def observe_event(function: str) -> Callable[[F], F]:
    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(event: Any, *args: Any, **kwargs: Any) -> Any:
            from call_downloader.events.types import MalformedEvent

            type_label = event_type_label(_attr(event, "type"))
            with context.scope(function=function, **event_fields(event)) as scope:
                scope.pop("outcome", None)  # an enclosing scope's outcome is not ours
                in_progress = m().events_in_progress.labels(function)
                in_progress.inc()
                started = time.perf_counter()
                outcome, level, error = "ok", logging.INFO, None
                try:
                    result = handler(event, *args, **kwargs)
                    outcome = scope.get("outcome") or "ok"
                    return result
                except MalformedEvent as exc:
                    outcome, level, error = "poison", logging.ERROR, exc
                    raise
                except Exception as exc:
                    outcome, level, error = "retry", logging.WARNING, exc
                    raise
                finally:
                    seconds = time.perf_counter() - started
                    in_progress.dec()
                    m().events_handled.labels(function, type_label, outcome).inc()
                    m().event_duration.labels(function, type_label).observe(seconds)
                    log.log(
                        level,
                        "%s handled %s: %s%s",
                        function,
                        _attr(event, "type"),
                        outcome,
                        f" ({error!r})" if error is not None else "",
                        extra={"outcome": outcome, "duration_ms": round(seconds * 1000, 1)},
                    )

        return wrapper  # type: ignore[return-value]

    return decorate


@contextmanager
def dispatch_scope(function: str, event: Any) -> Iterator[None]:
    """The dispatcher's log scope for one message (the handler nests its own inside)."""
    with context.scope(function=function, **event_fields(event)):
        yield


def dispatched(function: str, event_type: Any, outcome: str, seconds: float | None = None) -> None:
    m().dispatched.labels(function, event_type_label(event_type), outcome).inc()
    if seconds is not None:
        m().dispatch_duration.labels(function).observe(seconds)
