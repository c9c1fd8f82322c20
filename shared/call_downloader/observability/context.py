"""What the current request or event is about: function, call id, CloudEvent id, trace.

One `scope` per HTTP request (endpoints.install's hooks) and per CloudEvent (the handlers'
`observe_event` and the dispatcher); every log record written inside it carries these fields
(logs.py). Context variables keep concurrent threads apart; a scope is always reset when its
request or event ends, so a pooled thread never leaks one call's ids into the next.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Fields a scope may hold (and the JSON log line shows). `traceparent` stays out of the log
# line: trace_id is its searchable part.
FIELDS = ("function", "call_id", "event_id", "event_type", "trace_id", "route")
_ALL = (*FIELDS, "traceparent", "outcome")

_scope: ContextVar[dict[str, Any] | None] = ContextVar("calldl_scope", default=None)

# W3C trace context, version 00: 32 hex trace id, 16 hex parent id, 2 hex flags; all-zero
# ids are invalid (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
MAX_ID_CHARS = 128


def valid_traceparent(value: object) -> str | None:
    """The header value when it is a well-formed W3C traceparent, else None."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    m = _TRACEPARENT.match(value)
    if m is None or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return value


def new_traceparent() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    valid = valid_traceparent(traceparent)
    return valid.split("-")[1] if valid else None


def _clean(value: Any) -> str | None:
    """Ids as short strings (never an unbounded blob from a request)."""
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    text = str(value)
    return text[:MAX_ID_CHARS]


def _cleaned(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in _ALL:
            raise TypeError(f"unknown context field {name!r}")
        if name == "traceparent":
            tp = valid_traceparent(value)
            if tp:
                out["traceparent"] = tp
                out["trace_id"] = tp.split("-")[1]
            continue
        cleaned = _clean(value)
        if cleaned is not None:
            out[name] = cleaned
    return out


def open_scope(**fields: Any) -> Token[dict[str, Any] | None]:
    """Start a scope (inheriting the enclosing one's fields); pass the token to close_scope."""
    parent = _scope.get() or {}
    return _scope.set({**parent, **_cleaned(fields)})


def close_scope(token: Token[dict[str, Any] | None]) -> None:
    try:
        _scope.reset(token)
    except ValueError:  # reset from another context (should not happen): drop the scope
        _scope.set(None)


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    token = open_scope(**fields)
    try:
        current = _scope.get()
        assert current is not None
        yield current
    finally:
        close_scope(token)


def bind(**fields: Any) -> None:
    """Add fields to the current scope (no-op outside one: nothing would reset them)."""
    current = _scope.get()
    if current is not None:
        current.update(_cleaned(fields))


def current() -> dict[str, Any]:
    return dict(_scope.get() or {})


def get(name: str) -> Any:
    return (_scope.get() or {}).get(name)


def traceparent(incoming: str | None = None) -> str | None:
    """The trace to continue: the current scope's, else a valid incoming header, else None."""
    return get("traceparent") or valid_traceparent(incoming)


def in_scope(fn: F) -> F:
    """Run `fn` in a fresh scope (its `bind` calls end with it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
