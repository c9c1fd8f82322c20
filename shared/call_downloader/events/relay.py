"""The outbox relay: publishes committed events with confirms, then marks them published.

Several relays may run at once (`FOR UPDATE SKIP LOCKED`). A crash after publishing and before
marking re-publishes the event: consumers are idempotent on the CloudEvent id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url

from call_downloader.config import get_settings, sqlalchemy_url
from call_downloader.db.engine import Transaction, transaction
from call_downloader.db.models import OutboxEvent
from call_downloader.events import outbox
from call_downloader.events.broker import Message, Publisher, PublishError, Topology, topology
from call_downloader.observability import metrics
from call_downloader.observability import state as state_metrics
from call_downloader.testing import faults

log = logging.getLogger(__name__)


def publish_due(publisher: Publisher, topo: Topology, batch: int = 200) -> int:
    """Publish up to `batch` due events; returns how many were published."""
    return _publish_due(publisher, topo, batch).published


@dataclass(frozen=True)
class _Round:
    published: int
    failed: bool  # the broker refused or was unreachable: back off
    more: bool  # a full batch: more may be due at once
    next_due: float | None  # seconds until the earliest unpublished event (None: none)


@cache
def _due_query(batch: int) -> Any:
    table = OutboxEvent.__table__
    return (
        select(table)
        .where(table.c.published_at.is_(None), table.c.available_at <= bindparam("now"))
        .order_by(table.c.available_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


def _id_among(dialect: str) -> Any:
    """`id` is one of the `ids` parameter's. On PostgreSQL `= ANY(array)`: one statement
    whatever the batch's size (an IN list renders a statement per size, each prepared anew on
    each connection)."""
    id_ = OutboxEvent.__table__.c.id
    if dialect == "postgresql":
        return id_ == any_(bindparam("ids", type_=ARRAY(id_.type)))
    return id_.in_(bindparam("ids", expanding=True))


@cache
def _mark_published_statement(dialect: str) -> Any:
    table = OutboxEvent.__table__
    return update(table).where(_id_among(dialect)).values(published_at=bindparam("now"))


@cache
def _mark_refused_statement(dialect: str) -> Any:
    table = OutboxEvent.__table__
    return (
        update(table)
        .where(_id_among(dialect))
        .values(publish_attempts=table.c.publish_attempts + 1)
    )


@cache
def _next_due_query() -> Any:
    table = OutboxEvent.__table__
    return select(func.min(table.c.available_at)).where(table.c.published_at.is_(None))


def _publish_due(publisher: Publisher, topo: Topology, batch: int = 200) -> _Round:
    """One round in one transaction: lock the due rows, publish them as a batch (confirms
    awaited together when the publisher can), mark the confirmed ones, and find when the next
    scheduled one is due (instead of a separate transaction per question).

    A Core transaction with statements built once: an ORM session and statements built per
    round were most of the relay's CPU (py-spy, `make bench --profile`)."""
    with transaction() as tx:
        rows = tx.execute(_due_query(batch), {"now": datetime.now(UTC)}).all()
        published = 0
        failed = False
        if rows:
            faults.point("relay.before_publish")  # committed, not yet published
            confirmed = _publish_rows(publisher, topo, rows)
            faults.point("relay.after_publish_before_mark")  # published, not marked: re-sent
            done = [row.id for row, ok in zip(rows, confirmed, strict=True) if ok]
            refused = [row.id for row, ok in zip(rows, confirmed, strict=True) if not ok]
            if done:
                tx.execute(
                    _mark_published_statement(tx.dialect_name),
                    {"ids": done, "now": datetime.now(UTC)},
                )
            if refused:
                tx.execute(_mark_refused_statement(tx.dialect_name), {"ids": refused})
            for row, ok in zip(rows, confirmed, strict=True):
                if ok:
                    metrics.outbox_published(row.type, row.available_at)
                else:
                    metrics.outbox_publish_failed()
            published, failed = len(done), bool(refused)
            if failed:
                log.warning(
                    "outbox publish failed for %d of %d events; will retry",
                    len(rows) - published,
                    len(rows),
                )
        more = len(rows) == batch and not failed
        next_due = None if more else _seconds_until_next_due(tx)
        return _Round(published, failed, more, next_due)


def _publish_rows(publisher: Publisher, topo: Topology, rows: Sequence[Any]) -> list[bool]:
    """Which rows the broker confirmed. A publisher without batches (the embedded mode's)
    publishes one by one and stops at the first failure, as before."""
    messages = [
        Message(
            row.type,
            _json(outbox.to_envelope(row)),
            {"traceparent": row.traceparent} if row.traceparent else None,
            str(row.id),
        )
        for row in rows
    ]
    publish_many = getattr(publisher, "publish_many", None)
    if publish_many is not None:
        try:
            return list(publish_many(topo.exchange, messages))
        except PublishError as exc:
            log.warning("outbox publish failed: %s", exc)
            return [False] * len(rows)
    confirmed = [False] * len(rows)
    for index, message in enumerate(messages):
        try:
            publisher.publish(
                topo.exchange,
                message.routing_key,
                message.body,
                headers=message.headers,
                message_id=message.message_id,
            )
        except PublishError:
            break  # keep order; the broker is likely down: back off
        confirmed[index] = True
    return confirmed


def _json(body: dict) -> bytes:  # type: ignore[type-arg]
    from call_downloader.events.types import to_json_bytes

    return to_json_bytes(body)


def seconds_until_next_due() -> float | None:
    with transaction() as tx:
        return _seconds_until_next_due(tx)


def _seconds_until_next_due(tx: Transaction) -> float | None:
    nxt = tx.execute(_next_due_query()).scalar()
    if nxt is None:
        return None
    if nxt.tzinfo is None:
        nxt = nxt.replace(tzinfo=UTC)
    return max(0.0, (nxt - datetime.now(UTC)).total_seconds())


class _Listener:
    """LISTEN on the outbox channel so the relay wakes at commit instead of polling."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None

    def wait(self, timeout: float) -> None:
        url = make_url(sqlalchemy_url(get_settings().database_url))
        if not url.drivername.startswith("postgresql"):
            time.sleep(timeout)
            return
        try:
            if self._conn is None or self._conn.closed:
                conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
                self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
                self._conn.execute(f'LISTEN "{outbox.notify_channel()}"')
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            self.close()
            time.sleep(min(timeout, 1.0))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


class Relay:
    def __init__(self, publisher: Publisher | None = None) -> None:
        self.publisher = publisher or Publisher()
        self.stopped = threading.Event()
        self._listener = _Listener()

    def run(self) -> None:
        state_metrics.enable()  # this process's /metrics exports the outbox backlog gauges
        topo = topology()
        poll = get_settings().outbox_poll_seconds
        failures = 0
        while not self.stopped.is_set():
            try:
                result = _publish_due(self.publisher, topo)
                if result.failed:  # the broker refused or is down: back off, not spin
                    failures += 1
                    wait = min(30.0, 0.5 * 2**failures)
                else:
                    failures = 0
                    if result.more:
                        continue  # a full batch: more are due now
                    # New events wake the listener (NOTIFY at their commit, buffered while
                    # this round ran); scheduled ones are due after `next_due`.
                    nxt = result.next_due
                    wait = poll if nxt is None else min(poll, nxt)
            except Exception:  # database or broker down: back off, never die
                failures += 1
                # The full trace once; then one line per retry until it recovers.
                log.warning("outbox relay cannot publish (retrying)", exc_info=failures == 1)
                wait = min(30.0, 0.5 * 2**failures)
            if wait > 0:
                self._listener.wait(wait)

    def stop(self) -> None:
        self.stopped.set()
        self._listener.close()
        self.publisher.close()
