"""The hot path's statements are built once and keyed by stable objects."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import exists, literal

from call_downloader.db.models import ProcessedEvent
from call_downloader.pipeline import common


class _RecordingTx:
    """A stand-in for `db.engine.Transaction` that keeps what it was asked to run."""

    def __init__(self) -> None:
        self.statements: list[object] = []

    def execute(self, statement: object, parameters: object = None) -> _RecordingTx:
        self.statements.append(statement)
        return self

    def first(self) -> None:
        return None


def test_lock_call_row_reuses_one_statement_per_column_set() -> None:
    tx = _RecordingTx()
    for _ in range(3):
        common.lock_call_row(tx, uuid.uuid4(), common.CALLS.c.status, common.CALLS.c.ai_run)
    common.lock_call_row(tx, uuid.uuid4())
    first, second, third, whole_row = tx.statements
    assert first is second is third
    assert whole_row is not first


@pytest.mark.parametrize(
    "column",
    [
        exists().where(ProcessedEvent.event_id == "x"),  # a fresh expression per call
        literal(1),
        ProcessedEvent.__table__.c.event_id,  # another table's column
    ],
)
def test_lock_call_row_refuses_what_would_grow_its_cache(column: object) -> None:
    before = common._lock_call_query.cache_info().currsize
    with pytest.raises(TypeError):
        common.lock_call_row(_RecordingTx(), uuid.uuid4(), column)  # type: ignore[arg-type]
    assert common._lock_call_query.cache_info().currsize == before
