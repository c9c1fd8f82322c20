"""The transactional outbox: events are rows committed with the state change that causes them.

`add_event` is called inside the caller's unit of work. The relay (`relay.py`) publishes the
committed rows. A row whose `available_at` lies ahead is a scheduled event (retry backoff).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal, select, union_all

from call_downloader.config import get_settings
from call_downloader.db.engine import dialect_name
from call_downloader.db.models import OutboxEvent, TimelineEntry
from call_downloader.events import types as ev


def notify_channel() -> str:
    # LISTEN/NOTIFY channel names are identifiers: keep them simple.
    return "".join(c if c.isalnum() else "_" for c in get_settings().event_namespace) + "_outbox"


# Built once, on first use: building a statement per event cost as much as executing it.
@cache
def _insert_statement() -> Any:
    return insert(OutboxEvent.__table__)


_COLUMNS = ("id", "type", "subject", "data", "traceparent", "created_at", "available_at")


@cache
def _insert_and_notify_statement(timeline_entries: int = 0) -> Any:
    """PostgreSQL: the INSERT and the NOTIFY that wakes the relay, as one statement (one round
    trip and one execution per event instead of two); with `timeline_entries` rows of the
    timeline inserted by the same statement (parameters `timeline_<column>_<row>`)."""
    table = OutboxEvent.__table__
    inserted = (
        insert(table)
        # Parameters `event_<column>`: a name of the event's columns (`id`) given to the
        # statement would also be taken as a value for the timeline's own column.
        .values({name: bindparam(f"event_{name}", type_=table.c[name].type) for name in _COLUMNS})
        .returning(table.c.id)
        .cte("inserted")
    )
    statement = select(func.pg_notify(bindparam("channel"), literal(""))).select_from(inserted)
    if timeline_entries:
        # A data-modifying WITH runs once, to completion, whether the query reads it or not.
        statement = statement.add_cte(_timeline_rows(timeline_entries).cte("timeline_entries"))
    return statement


_TIMELINE_COLUMNS = ("call_id", "stage", "event", "detail", "at")


@cache
def _timeline_rows(rows: int) -> Any:
    """INSERT INTO timeline … SELECT … UNION ALL SELECT …: `rows` rows (alone, or as a CTE of
    the event's statement: `.cte()` makes a new object and leaves this one as it is). Not
    `.values([…])`: SQLAlchemy gives a multi-row VALUES no cache key, so it was compiled anew
    at every execution (12 % of the server's CPU in py-spy)."""
    table = TimelineEntry.__table__
    rows_selected = [
        select(
            *(
                bindparam(f"timeline_{c}_{i}", type_=table.c[c].type).label(c)
                for c in _TIMELINE_COLUMNS
            )
        )
        for i in range(rows)
    ]
    selected = rows_selected[0] if rows == 1 else union_all(*rows_selected)
    return insert(table).from_select(_TIMELINE_COLUMNS, selected)


def _timeline_params(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        f"timeline_{c}_{i}": entry[c] for i, entry in enumerate(entries) for c in _TIMELINE_COLUMNS
    }


@dataclass(frozen=True)
class AddedEvent:
    id: uuid.UUID


def add_event(
    executor: Any,
    type_: str,
    subject: str | uuid.UUID,
    data: dict[str, Any],
    *,
    delay_seconds: float = 0.0,
    traceparent: str | None = None,
    timeline: Sequence[dict[str, Any]] = (),
) -> AddedEvent:
    """Insert the event in the caller's transaction (`executor`: a `db.engine.Transaction` or an
    ORM Session; a plain INSERT either way, without ORM bookkeeping). `timeline`: the call's
    timeline entries that go with the event (rows with call_id, stage, event, detail, at),
    inserted by the same statement where it can (PostgreSQL, an event due now)."""
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    row = {
        "id": event_id,
        "type": type_,
        "subject": str(subject),
        "data": data,
        "traceparent": ev.child_traceparent(traceparent),
        "created_at": now,
        "available_at": now + timedelta(seconds=max(0.0, delay_seconds)),
    }
    if delay_seconds < get_settings().outbox_poll_seconds and (
        dialect_name(executor) == "postgresql"
    ):
        # Wakes the relay at commit (NOTIFY is transactional); polling remains the fallback,
        # and is soon enough for an event due later than the next poll anyway.
        executor.execute(
            _insert_and_notify_statement(len(timeline)),
            {f"event_{name}": value for name, value in row.items()}
            | {"channel": notify_channel()}
            | _timeline_params(timeline),
        ).close()
    else:
        if timeline:
            executor.execute(_timeline_rows(len(timeline)), _timeline_params(timeline))
        executor.execute(_insert_statement(), row)
    return AddedEvent(event_id)


def withdraw_unpublished(session: Any, event_id: uuid.UUID) -> bool:
    """Delete a scheduled event the relay has not published yet (its work was done another
    way); True when it was still there. A published one stays: its consumer must skip it."""
    deleted = session.execute(_withdraw_statement(), {"event_id": event_id})
    return bool(deleted.rowcount)


@cache
def _withdraw_statement() -> Any:
    table = OutboxEvent.__table__
    return delete(table).where(table.c.id == bindparam("event_id"), table.c.published_at.is_(None))


def to_envelope(row: OutboxEvent, source: str = "/call-downloader") -> dict[str, Any]:
    return ev.envelope(
        row.id,
        row.type,
        row.subject,
        row.data,
        source=source,
        time=row.created_at,
        traceparent=row.traceparent,
    )
