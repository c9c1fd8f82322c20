"""Gauges read from PostgreSQL at scrape time: the outbox backlog, calls waiting in each
non-final status (and how long the oldest has waited), pending and dead deliveries.

Served by the process that owns the outbox (the relay, and `make run`), so the numbers are
exported once, not by every function; of several relay replicas only the one holding a
PostgreSQL advisory lock exports them (`calldl_state_exporter` 1 there, 0 on the others), so
sums over replicas count each call once. The queries use the indexes on (published_at,
available_at), (status, received_at) and (status, updated_at) and only touch unfinished rows;
each scrape runs them in one short read-only transaction with a statement timeout, and the
result is cached briefly so several scrapers cost one query. A database error exports
`calldl_state_up 0` instead of failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from call_downloader.observability.metrics import event_type_label

log = logging.getLogger(__name__)

WAITING_STATUSES = ("received", "analyzed", "processing", "processed")
SUBSCRIBERS = ("analyze-duration", "call-ai", "deliver")  # events.broker.SUBSCRIPTIONS


def _age(ts: datetime | None, now: datetime) -> float:
    if ts is None:
        return 0.0
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return max(0.0, (now - ts).total_seconds())


def _statements(now: datetime) -> dict[str, Any]:
    """The queries, in SQLAlchemy Core so that they run on PostgreSQL and on the embedded
    SQLite alike (timestamps compared and returned through the models' column types)."""
    from sqlalchemy import case, func, select

    from call_downloader.db.models import Call, Delivery, OutboxEvent, QueueMessage

    due = OutboxEvent.available_at <= now
    return {
        "outbox": select(
            OutboxEvent.type,
            func.count().label("unpublished"),
            func.coalesce(func.sum(case((due, 1), else_=0)), 0).label("due"),
            func.min(
                case((due, OutboxEvent.available_at)), type_=OutboxEvent.available_at.type
            ).label("oldest_due"),
        )
        .where(OutboxEvent.published_at.is_(None))
        .group_by(OutboxEvent.type),
        "calls": select(
            Call.status,
            func.count().label("n"),
            func.min(Call.updated_at, type_=Call.updated_at.type).label("oldest"),
        )
        .where(Call.status.in_(WAITING_STATUSES))
        .group_by(Call.status),
        "deliveries": select(
            Delivery.status,
            func.count().label("n"),
            func.min(Delivery.updated_at, type_=Delivery.updated_at.type).label("oldest"),
        )
        .where(Delivery.status.in_(("pending", "dead")))
        .group_by(Delivery.status),
        # The embedded event transport's queues (empty when RabbitMQ carries the events).
        "queues": select(
            QueueMessage.function, QueueMessage.dead, func.count().label("n")
        ).group_by(QueueMessage.function, QueueMessage.dead),
    }


def query_state(connect: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The raw numbers (tests read them too)."""
    from sqlalchemy import text

    if connect is None:
        from call_downloader.db.engine import get_engine

        connect = get_engine().connect
    now = datetime.now(UTC)
    out: dict[str, Any] = {"now": now}
    with connect() as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
                conn.execute(text("SET LOCAL statement_timeout = '3s'"))
            for name, statement in _statements(now).items():
                out[name] = conn.execute(statement).all()
    return out


# pg_try_advisory_lock key of the state exporter ("cdls").
EXPORTER_LOCK_KEY = 0x63646C73


class ExporterLock:
    """Which process exports the state: on PostgreSQL the one holding the advisory lock, on a
    connection of its own kept open (the lock lasts as long as that session); elsewhere
    (SQLite: one process) always this one. `held()`: True, False (another holds it) or None
    (the database did not answer)."""

    def __init__(self) -> None:
        self._conn: Any = None

    def held(self) -> bool | None:
        from sqlalchemy import text

        from call_downloader.db.engine import get_engine

        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1")).scalar()
                self._conn.commit()
                return True
            except Exception:  # the session (and its lock) is gone
                self._drop()
        engine = get_engine()
        if engine.dialect.name != "postgresql":
            return True
        try:
            conn = engine.connect()
        except Exception:
            return None
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": EXPORTER_LOCK_KEY}
            ).scalar()
            conn.commit()  # a session-level lock outlives the transaction
        except Exception:
            conn.invalidate()
            conn.close()
            return None
        if got:
            self._conn = conn
            return True
        conn.close()  # holds nothing: back to the pool
        return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.invalidate()  # never back to the pool with the lock on it
            conn.close()
        except Exception:
            pass


class StateCollector(Collector):
    def __init__(
        self,
        cache_seconds: float = 5.0,
        connect: Callable[[], Any] | None = None,
        exporter: Callable[[], bool | None] | None = None,
    ):
        self.cache_seconds = cache_seconds
        self._connect = connect
        self._exporter = exporter
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, self._families())
            return list(self._cached[1])

    def _families(self) -> list[GaugeMetricFamily]:
        exporting = self._exporter() if self._exporter is not None else True
        exporter = GaugeMetricFamily(
            "calldl_state_exporter",
            "1 on the one process (relay replica) that exports the state gauges, else 0.",
        )
        exporter.add_metric([], 1 if exporting else 0)
        if exporting is False:  # another replica exports them
            return [exporter]
        up = GaugeMetricFamily(
            "calldl_state_up", "1 when the last database state query succeeded, else 0."
        )
        if exporting is None:  # the database did not answer: blind, and said so
            up.add_metric([], 0)
            return [exporter, up]
        started = time.monotonic()
        try:
            state = query_state(self._connect)
        except Exception as exc:  # the scrape must answer even when the database does not
            log.warning("state metrics query failed: %s", exc)
            up.add_metric([], 0)
            return [exporter, up]
        up.add_metric([], 1)
        took = GaugeMetricFamily(
            "calldl_state_query_duration_seconds", "How long the state query took."
        )
        took.add_metric([], time.monotonic() - started)
        now = state["now"]

        unpublished = GaugeMetricFamily(
            "calldl_outbox_unpublished_events",
            "Outbox events not yet published (due now or scheduled later), by type.",
            labels=["type"],
        )
        due = GaugeMetricFamily(
            "calldl_outbox_due_events",
            "Outbox events due now and not yet published (the relay's backlog), by type.",
            labels=["type"],
        )
        oldest_due = GaugeMetricFamily(
            "calldl_outbox_oldest_due_age_seconds",
            "How long the oldest due, unpublished outbox event has waited (0: none).",
        )
        per_type: dict[str, list[float]] = {}
        oldest: datetime | None = None
        for row in state["outbox"]:
            counts = per_type.setdefault(event_type_label(row.type), [0, 0])
            counts[0] += row.unpublished
            counts[1] += row.due
            if row.oldest_due is not None:
                ts = row.oldest_due if row.oldest_due.tzinfo else row.oldest_due.replace(tzinfo=UTC)
                oldest = ts if oldest is None or ts < oldest else oldest
        for type_, (n_unpublished, n_due) in sorted(per_type.items()):
            unpublished.add_metric([type_], n_unpublished)
            due.add_metric([type_], n_due)
        oldest_due.add_metric([], _age(oldest, now))

        calls = GaugeMetricFamily(
            "calldl_calls_waiting",
            "Calls in a non-final status (received, analyzed, processing, processed).",
            labels=["status"],
        )
        calls_age = GaugeMetricFamily(
            "calldl_calls_oldest_waiting_age_seconds",
            "Age of the oldest call in this status since its last change (0: none).",
            labels=["status"],
        )
        by_status = {row.status: row for row in state["calls"]}
        for status in WAITING_STATUSES:
            row = by_status.get(status)
            calls.add_metric([status], row.n if row else 0)
            calls_age.add_metric([status], _age(row.oldest, now) if row else 0.0)

        deliveries = GaugeMetricFamily(
            "calldl_deliveries",
            "Deliveries pending (retries to come) and dead (dead-lettered, awaiting an "
            "operator's replay).",
            labels=["status"],
        )
        pending_age = GaugeMetricFamily(
            "calldl_deliveries_oldest_pending_age_seconds",
            "Age of the oldest pending delivery since its last change (0: none).",
        )
        by_delivery = {row.status: row for row in state["deliveries"]}
        for status in ("pending", "dead"):
            row = by_delivery.get(status)
            deliveries.add_metric([status], row.n if row else 0)
        pending = by_delivery.get("pending")
        pending_age.add_metric([], _age(pending.oldest, now) if pending else 0.0)

        queued = GaugeMetricFamily(
            "calldl_embedded_queue_messages",
            "Events in the embedded transport's queues (EVENT_TRANSPORT=database): waiting "
            "for their function, or dead-lettered. RabbitMQ's own metrics cover the broker.",
            labels=["function", "state"],
        )
        counts = {(fn, st): 0 for fn in SUBSCRIBERS for st in ("waiting", "dead")}
        for row in state.get("queues", []):
            key = (
                row.function if row.function in SUBSCRIBERS else "other",
                "dead" if row.dead else "waiting",
            )
            counts[key] = counts.get(key, 0) + row.n
        for (fn, st), n in sorted(counts.items()):
            queued.add_metric([fn, st], n)
        return [
            exporter,
            up,
            took,
            unpublished,
            due,
            oldest_due,
            calls,
            calls_age,
            deliveries,
            pending_age,
            queued,
        ]


_collector: StateCollector | None = None
_lock = threading.Lock()


def enable() -> StateCollector:
    """Export the state gauges from this process's /metrics (idempotent)."""
    global _collector
    from call_downloader.observability.metrics import add_collector

    with _lock:
        if _collector is None:
            _collector = StateCollector(exporter=ExporterLock().held)
        add_collector(_collector)
        return _collector
