"""`claim_and_lock`: the claim of an event and the lock of its call, one statement on
PostgreSQL, with the same outcomes as the two statements it replaces."""

from __future__ import annotations

import threading
import uuid

import pytest
from call_rows import received_call
from sqlalchemy import text

from call_downloader.db.engine import get_engine, transaction
from call_downloader.db.models import ProcessedEvent
from call_downloader.pipeline import common

COLUMNS = (common.CALLS.c.status, common.CALLS.c.ai_run)


def _claims(event_id: str) -> int:
    with transaction() as tx:
        return tx.execute(
            text("SELECT count(*) FROM processed_events WHERE event_id = :e"), {"e": event_id}
        ).scalar()


def test_a_first_claim_returns_the_locked_row(db):
    call_id = received_call()
    with transaction() as tx:
        claimed, row = common.claim_and_lock(tx, "stage", "ev-1", call_id, *COLUMNS)
        assert claimed
        assert (row.status, row.ai_run) == ("received", 1)
        # Locked for this transaction: another connection cannot take the row meanwhile.
        with get_engine().connect() as other:
            with pytest.raises(Exception, match="could not obtain lock"):
                other.execute(
                    text("SELECT id FROM calls WHERE id = :id FOR UPDATE NOWAIT"), {"id": call_id}
                )
    assert _claims("ev-1") == 1


def test_an_event_claimed_already_is_skipped_and_locks_nothing(db):
    call_id = received_call()
    with transaction() as tx:
        assert common.claim_and_lock(tx, "stage", "ev-2", call_id, *COLUMNS)[0]
    with transaction() as tx:
        assert common.claim_and_lock(tx, "stage", "ev-2", call_id, *COLUMNS) == (False, None)
        with get_engine().connect() as other:  # not locked by the skipped claim
            other.execute(
                text("SELECT id FROM calls WHERE id = :id FOR UPDATE NOWAIT"), {"id": call_id}
            )
            other.rollback()
    # Another consumer's claim of the same event is its own.
    with transaction() as tx:
        assert common.claim_and_lock(tx, "other-stage", "ev-2", call_id, *COLUMNS)[0]
    assert _claims("ev-2") == 2


def test_a_call_that_is_gone_is_claimed_without_a_row(db):
    with transaction() as tx:
        assert common.claim_and_lock(tx, "stage", "ev-3", uuid.uuid4(), *COLUMNS) == (True, None)
    assert _claims("ev-3") == 1


def test_a_concurrent_duplicate_waits_for_the_first_and_then_skips(db):
    call_id = received_call()
    started, outcome = threading.Event(), {}

    def duplicate() -> None:
        started.set()
        with transaction() as tx:
            outcome["second"] = common.claim_and_lock(tx, "stage", "ev-4", call_id, *COLUMNS)

    with transaction() as tx:
        assert common.claim_and_lock(tx, "stage", "ev-4", call_id, *COLUMNS)[0]
        thread = threading.Thread(target=duplicate)
        thread.start()
        started.wait(5)
        thread.join(0.5)
        assert thread.is_alive()  # blocked on the uncommitted claim
    thread.join(10)
    assert outcome["second"] == (False, None)
    assert _claims("ev-4") == 1


def test_the_statement_is_built_once_per_column_set():
    first = common._claim_and_lock_query(COLUMNS)
    assert common._claim_and_lock_query(COLUMNS) is first
    with pytest.raises(TypeError):
        common.claim_and_lock(
            None, "stage", "ev", uuid.uuid4(), ProcessedEvent.__table__.c.event_id
        )
