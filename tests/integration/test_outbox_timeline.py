"""`outbox.add_event(timeline=…)`: the call's timeline entries committed with the event, by
the same statement on PostgreSQL when the event is due now."""

from __future__ import annotations

import uuid
from typing import Any

from call_rows import received_call
from sqlalchemy import event, select, text

from call_downloader.db.engine import get_engine, transaction, unit_of_work
from call_downloader.db.models import OutboxEvent, TimelineEntry
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.pipeline.common import timeline_entry


def _sent_while(fn: Any) -> list[str]:
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("SET plan_cache_mode"):
            sent.append(statement)

    event.listen(get_engine(), "before_cursor_execute", note)
    try:
        fn()
    finally:
        event.remove(get_engine(), "before_cursor_execute", note)
    return sent


def _timeline(call_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    with unit_of_work() as session:
        rows = session.execute(
            select(TimelineEntry.event, TimelineEntry.detail)
            .where(TimelineEntry.call_id == call_id)
            .order_by(TimelineEntry.at, TimelineEntry.id)
        ).all()
    return [(row.event, row.detail) for row in rows]


def test_entries_and_event_are_one_statement(db):
    call_id = received_call()
    added: list[Any] = []

    def add() -> None:
        with transaction() as tx:
            added.append(
                outbox.add_event(
                    tx,
                    ev.CALL_PROCESSED,
                    call_id,
                    {"call_id": str(call_id)},
                    timeline=[
                        timeline_entry(call_id, "call-ai", "result_stored", version=1),
                        timeline_entry(call_id, "call-ai", "ai_answered", attempt=1),
                    ],
                )
            )

    sent = _sent_while(add)
    assert len(sent) == 1, sent
    assert "INSERT INTO timeline" in sent[0] and "INSERT INTO outbox" in sent[0]
    assert _timeline(call_id) == [
        ("result_stored", {"version": 1}),
        ("ai_answered", {"attempt": 1}),
    ]
    with unit_of_work() as session:
        row = session.get(OutboxEvent, added[0].id)
        assert (row.type, row.subject) == (ev.CALL_PROCESSED, str(call_id))


def test_a_scheduled_event_inserts_its_entries_beside_it(db):
    call_id = received_call()

    def add() -> None:
        with transaction() as tx:
            outbox.add_event(
                tx,
                ev.AI_RETRY,
                call_id,
                {"call_id": str(call_id)},
                delay_seconds=3600,
                timeline=[timeline_entry(call_id, "call-ai", "ai_accepted", attempt=1)],
            )

    sent = _sent_while(add)
    assert [sql.split(" (")[0] for sql in sent] == ["INSERT INTO timeline", "INSERT INTO outbox"]
    assert _timeline(call_id) == [("ai_accepted", {"attempt": 1})]


def test_a_failed_transaction_keeps_neither(db):
    call_id = received_call()
    try:
        with transaction() as tx:
            outbox.add_event(
                tx,
                ev.CALL_ANALYZED,
                call_id,
                {"call_id": str(call_id)},
                timeline=[timeline_entry(call_id, "analyze-duration", "analyzed")],
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _timeline(call_id) == []
    with transaction() as tx:
        left = tx.execute(
            text("SELECT count(*) FROM outbox WHERE subject = :s"), {"s": str(call_id)}
        ).scalar()
    assert left == 0
