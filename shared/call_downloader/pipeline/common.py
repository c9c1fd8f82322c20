"""What every stage does alike: idempotency records, the timeline, failing a call."""

from __future__ import annotations

import json
import math
import re
import uuid
from functools import cache
from typing import Any

from cloudevents.http import CloudEvent
from sqlalchemy import Column, bindparam, exists, insert, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from call_downloader.db.engine import dialect_name
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


def record(session: Session, call_id: uuid.UUID, stage: str, event: str, **detail: Any) -> None:
    session.add(
        TimelineEntry(call_id=call_id, stage=stage, event=event, detail=detail, at=utcnow())
    )


def lock_call(session: Session, call_id: uuid.UUID) -> Call | None:
    return session.execute(
        select(Call).where(Call.id == call_id).with_for_update()
    ).scalar_one_or_none()


# -- The hot paths: plain Core statements on a `db.engine.Transaction` -----------------------

CALLS = Call.__table__
PROCESSED = ProcessedEvent.__table__
TIMELINE = TimelineEntry.__table__


# Statements are built once, on first use, and executed with parameters: building a Core
# statement and its cache key per execution cost as much CPU as running it (`make bench`).
@cache
def _claim_statement(dialect: str) -> Any:
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert_(PROCESSED).on_conflict_do_nothing()


@cache
def _lock_call_query(columns: tuple[Any, ...]) -> Any:
    return select(*columns).where(CALLS.c.id == bindparam("call_id_")).with_for_update()


@cache
def _update_call_statement() -> Any:
    # The SET clause is the parameters' keys besides `call_id_` (updated_at: its onupdate).
    return update(CALLS).where(CALLS.c.id == bindparam("call_id_"))


def claim_event(tx: Any, consumer: str, event_id: str) -> bool:
    """Record that `consumer` applies this event in `tx`; False (and the outcome "skipped")
    when it was applied already. One statement for the check and the mark: a concurrent
    duplicate waits on the uncommitted key, then finds it."""
    claimed = tx.execute(
        _claim_statement(dialect_name(tx)),
        {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()},
    ).rowcount
    if not claimed:
        note_skipped()
    return bool(claimed)


@cache
def _claim_and_lock_query(columns: tuple[Any, ...]) -> Any:
    # WITH claim AS (INSERT … ON CONFLICT DO NOTHING RETURNING …),
    #      locked AS (SELECT … FROM calls WHERE id = … AND EXISTS (claim) FOR UPDATE)
    # SELECT EXISTS (claim), locked.* FROM (one row) LEFT JOIN locked ON true
    # The lock depends on the claim, so the claim runs first (as in two statements): a
    # duplicate waits on the uncommitted key, then finds it taken and locks nothing.
    claim = (
        pg_insert(PROCESSED)
        .values(
            consumer=bindparam("consumer"),
            event_id=bindparam("event_id"),
            processed_at=bindparam("processed_at"),
        )
        .on_conflict_do_nothing()
        .returning(PROCESSED.c.event_id)
        .cte("claim")
    )
    claimed = exists(select(claim.c.event_id))
    locked = (
        select(CALLS.c.id.label("locked_id_"), *columns)
        .where(CALLS.c.id == bindparam("call_id_"), claimed)
        .with_for_update()
        .cte("locked")
    )
    one_row = select(literal_column("1").label("one")).subquery("one_row")
    return select(claimed.label("claimed_"), *locked.c).select_from(
        one_row.outerjoin(locked, true())
    )


def claim_and_lock(
    tx: Any, consumer: str, event_id: str, call_id: uuid.UUID, *columns: Column[Any]
) -> tuple[bool, Any]:
    """`claim_event`, then (when claimed) `lock_call_row`: (claimed, the row or None). On
    PostgreSQL one statement instead of two."""
    if not columns:
        raise TypeError("claim_and_lock takes the columns to read")
    _check_columns(columns)
    if dialect_name(tx) != "postgresql":
        if not claim_event(tx, consumer, event_id):
            return False, None
        return True, lock_call_row(tx, call_id, *columns)
    row = tx.execute(
        _claim_and_lock_query(columns),
        {
            "consumer": consumer,
            "event_id": event_id,
            "processed_at": utcnow(),
            "call_id_": call_id,
        },
    ).first()
    if not row.claimed_:
        note_skipped()
        return False, None
    if row.locked_id_ is None:  # the outer join's NULLs: the call is gone
        return True, None
    return True, row


def timeline_entry(call_id: uuid.UUID, stage: str, event: str, **detail: Any) -> dict[str, Any]:
    """A timeline row, timed now: for `add_timeline`, or for `outbox.add_event(timeline=…)`,
    which inserts it with the event (one statement on PostgreSQL)."""
    return {"call_id": call_id, "stage": stage, "event": event, "detail": detail, "at": utcnow()}


def add_timeline(tx: Any, call_id: uuid.UUID, stage: str, event: str, **detail: Any) -> None:
    tx.execute(insert_statement(TIMELINE), timeline_entry(call_id, stage, event, **detail))


@cache
def insert_statement(table: Any) -> Any:
    """INSERT INTO `table`, its columns named by the parameters it is executed with."""
    return insert(table)


def lock_call_row(tx: Any, call_id: uuid.UUID, *columns: Column[Any]) -> Any:
    """The call's row (all columns, or `columns`: the table's own Column objects, which key
    the statement cache) locked for this transaction; None if gone."""
    _check_columns(columns)
    return tx.execute(_lock_call_query(columns or (CALLS,)), {"call_id_": call_id}).first()


def _check_columns(columns: tuple[Any, ...]) -> None:
    if not all(isinstance(c, Column) and c.table is CALLS for c in columns):
        # A fresh expression per call would add a cache entry per call.
        raise TypeError("lock_call_row takes columns of the calls table")


def update_call(tx: Any, call_id: uuid.UUID, **values: Any) -> None:
    tx.execute(_update_call_statement(), {"call_id_": call_id, **values})


def fail_call_row(
    tx: Any, call_id: uuid.UUID, stage: str, reason: str, detail: str, **values: Any
) -> None:
    """Fail the call: status, error, timeline entry and metric."""
    update_call(
        tx,
        call_id,
        status=CallStatus.FAILED,
        error_stage=stage,
        error_reason=reason,
        error_detail=detail[:2000],
        **values,
    )
    add_timeline(tx, call_id, stage, "failed", reason=reason, detail=detail[:500])
    metrics.call_failed(tx, stage, reason)


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


MAX_JSON_DEPTH = 64
# PostgreSQL's jsonb refuses NUL characters and unpaired surrogates (Python's json takes both).
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: bytes | str) -> Any:
    """Parse JSON that will be stored as jsonb; ValueError (with a reason) for anything else:
    bad syntax, NaN/Infinity, nesting deeper than MAX_JSON_DEPTH, NUL or lone surrogates."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    check_storable(value)
    return value


def check_storable(value: Any) -> None:
    """Raise ValueError when PostgreSQL's jsonb could not keep `value` (walked iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str) or _UNSTORABLE_TEXT.search(key):
                    raise ValueError("JSON keys must be text without NUL or lone surrogates")
                stack.append((inner, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((inner, depth + 1) for inner in item)
        elif isinstance(item, str):
            if _UNSTORABLE_TEXT.search(item):
                raise ValueError("JSON text must not contain NUL or lone surrogates")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not valid JSON")
