"""What every stage does alike: idempotency records, the timeline, failing a call."""

from __future__ import annotations

import uuid
from typing import Any

from cloudevents.http import CloudEvent
from sqlalchemy import select
from sqlalchemy.orm import Session

from call_downloader.db.models import Call, CallStatus, ProcessedEvent, TimelineEntry, utcnow
from call_downloader.events import types as ev
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped


class PermanentError(Exception):
    """A failure that retrying cannot fix: recorded on the call, never retried."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def already_processed(session: Session, consumer: str, event_id: str) -> bool:
    done = session.get(ProcessedEvent, (consumer, event_id)) is not None
    if done:
        note_skipped()  # a duplicate: counted as outcome "skipped"
    return done


def mark_processed(session: Session, consumer: str, event_id: str) -> None:
    # A concurrent duplicate fails at commit on the primary key: its transaction rolls back,
    # the dispatcher retries it, and the retry finds this record.
    session.add(ProcessedEvent(consumer=consumer, event_id=event_id))


def record(session: Session, call_id: uuid.UUID, stage: str, event: str, **detail: Any) -> None:
    session.add(
        TimelineEntry(call_id=call_id, stage=stage, event=event, detail=detail, at=utcnow())
    )


def lock_call(session: Session, call_id: uuid.UUID) -> Call | None:
    return session.execute(
        select(Call).where(Call.id == call_id).with_for_update()
    ).scalar_one_or_none()


def fail_call(
    session: Session,
    call: Call,
    stage: str,
    reason: str,
    detail: str,
    traceparent: str | None = None,
) -> None:
    call.status = CallStatus.FAILED
    call.error_stage = stage
    call.error_reason = reason
    call.error_detail = detail[:2000]
    record(session, call.id, stage, "failed", reason=reason, detail=detail[:500])
    metrics.call_failed(session, stage, reason)


def call_id_of(event: CloudEvent) -> uuid.UUID:
    try:
        return uuid.UUID(str(event["subject"]))
    except (KeyError, ValueError):
        raise ev.MalformedEvent("subject is not a call id") from None


def traceparent_of(event: CloudEvent) -> str | None:
    try:
        value = event["traceparent"]
    except KeyError:
        return None
    return str(value) if value else None
