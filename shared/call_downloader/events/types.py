"""CloudEvent types of the pipeline and how to build and read them.

Types are reverse-DNS and versioned; `subject` is always the call id. On the wire (RabbitMQ)
events are structured-mode JSON; HTTP hops use binary mode (functions-framework parses both).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent, from_dict

PREFIX = "dev.calldownloader"
CALL_RECEIVED = f"{PREFIX}.call.received.v1"
CALL_ANALYZED = f"{PREFIX}.call.analyzed.v1"
AI_RETRY = f"{PREFIX}.ai.retry.v1"
CALL_PROCESSED = f"{PREFIX}.call.processed.v1"
DELIVERY_DUE = f"{PREFIX}.delivery.due.v1"

CONTENT_TYPE = "application/cloudevents+json"


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None) -> str:
    """Same trace, new span: every hop of a call shares one trace id."""
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return f"00-{parts[1]}-{os.urandom(8).hex()}-{parts[3]}"
    return new_traceparent()


def trace_id(traceparent: str | None) -> str | None:
    if traceparent and traceparent.count("-") == 3:
        return traceparent.split("-")[1]
    return None


def envelope(
    event_id: uuid.UUID | str,
    type_: str,
    subject: str,
    data: dict[str, Any],
    *,
    source: str,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """The structured-mode CloudEvent as a dict (JSON-serialisable)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": source,
        "type": type_,
        "subject": subject,
        "time": (time or datetime.now(UTC)).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    if traceparent:
        event["traceparent"] = traceparent
    return event


def to_json_bytes(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), default=str).encode()


class MalformedEvent(ValueError):
    """The bytes are not a CloudEvent this product can handle (poison: never retried)."""


def parse_structured(body: bytes) -> CloudEvent:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedEvent("not a JSON object")
    for attr in ("specversion", "id", "source", "type"):
        if not isinstance(raw.get(attr), str) or not raw[attr]:
            raise MalformedEvent(f"missing CloudEvent attribute {attr!r}")
    try:
        return from_dict(raw)
    except Exception as exc:  # the SDK raises several types on bad attributes
        raise MalformedEvent(str(exc)) from None


def event_data(event: CloudEvent) -> dict[str, Any]:
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise MalformedEvent("data is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("data is not a JSON object")
    return data
