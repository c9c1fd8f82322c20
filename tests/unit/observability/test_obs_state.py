"""The scrape-time state collector: gauges from the query's rows, bounded labels, cached,
and `calldl_state_up 0` instead of a failed scrape when the database does not answer.
(Against real PostgreSQL: tests/integration/test_observability.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace as Row

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from call_downloader.observability import state

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def canned(calls=1):
    def query(connect=None):
        canned.calls += 1
        return {
            "now": NOW,
            "outbox": [
                Row(
                    type="dev.calldownloader.call.received.v1",
                    unpublished=5,
                    due=3,
                    oldest_due=NOW - timedelta(seconds=40),
                ),
                Row(type="dev.calldownloader.ai.retry.v1", unpublished=2, due=0, oldest_due=None),
                Row(
                    type="injected.by.someone",
                    unpublished=1,
                    due=1,
                    oldest_due=NOW.replace(tzinfo=None) - timedelta(seconds=90),
                ),
            ],
            "calls": [Row(status="received", n=4, oldest=NOW - timedelta(minutes=3))],
            "deliveries": [
                Row(status="dead", n=2, oldest=NOW - timedelta(days=1)),
                Row(status="pending", n=1, oldest=NOW - timedelta(seconds=30)),
            ],
        }

    canned.calls = 0
    return query


def scrape(collector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_gauges_from_the_rows(monkeypatch):
    monkeypatch.setattr(state, "query_state", canned())
    got = scrape(state.StateCollector(cache_seconds=0))
    assert got[("calldl_state_up", ())] == 1
    received = (("type", "dev.calldownloader.call.received.v1"),)
    assert got[("calldl_outbox_unpublished_events", received)] == 5
    assert got[("calldl_outbox_due_events", received)] == 3
    assert got[("calldl_outbox_due_events", (("type", "dev.calldownloader.ai.retry.v1"),))] == 0
    assert got[("calldl_outbox_due_events", (("type", "other"),))] == 1  # bounded label
    assert got[("calldl_outbox_oldest_due_age_seconds", ())] == 90  # naive taken as UTC
    assert got[("calldl_calls_waiting", (("status", "received"),))] == 4
    assert got[("calldl_calls_waiting", (("status", "processing"),))] == 0  # always listed
    assert got[("calldl_calls_oldest_waiting_age_seconds", (("status", "received"),))] == 180
    assert got[("calldl_calls_oldest_waiting_age_seconds", (("status", "analyzed"),))] == 0
    assert got[("calldl_deliveries", (("status", "dead"),))] == 2
    assert got[("calldl_deliveries", (("status", "pending"),))] == 1
    assert got[("calldl_deliveries_oldest_pending_age_seconds", ())] == 30


def test_results_are_cached_between_close_scrapes(monkeypatch):
    query = canned()
    monkeypatch.setattr(state, "query_state", query)
    collector = state.StateCollector(cache_seconds=3600)
    scrape(collector)
    scrape(collector)
    assert canned.calls == 1
    uncached = state.StateCollector(cache_seconds=0)
    scrape(uncached)
    scrape(uncached)
    assert canned.calls == 3


def test_a_failing_database_gives_state_up_zero(monkeypatch):
    def broken(connect=None):
        raise ConnectionError("could not connect to server: password=hunter2")

    monkeypatch.setattr(state, "query_state", broken)
    got = scrape(state.StateCollector(cache_seconds=0))
    assert got == {("calldl_state_up", ()): 0, ("calldl_state_exporter", ()): 1}


def test_only_the_exporting_replica_exports_the_state(monkeypatch):
    monkeypatch.setattr(state, "query_state", canned())
    other = scrape(state.StateCollector(cache_seconds=0, exporter=lambda: False))
    assert other == {("calldl_state_exporter", ()): 0}
    blind = scrape(state.StateCollector(cache_seconds=0, exporter=lambda: None))
    assert blind == {("calldl_state_exporter", ()): 0, ("calldl_state_up", ()): 0}
    leader = scrape(state.StateCollector(cache_seconds=0, exporter=lambda: True))
    assert leader[("calldl_state_exporter", ())] == 1 and leader[("calldl_state_up", ())] == 1


@pytest.fixture
def restore_collectors():
    from call_downloader.observability import metrics

    saved, saved_collector = list(metrics._extra_collectors), state._collector
    yield
    metrics._extra_collectors[:] = saved
    state._collector = saved_collector


def test_enable_adds_the_collector_once(restore_collectors, monkeypatch):
    from call_downloader.observability import metrics

    monkeypatch.setattr(state, "query_state", canned())
    monkeypatch.setattr(state.ExporterLock, "held", lambda self: True)
    first = state.enable()
    assert state.enable() is first
    assert metrics._extra_collectors.count(first) == 1
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    assert b"calldl_outbox_due_events" in metrics.render()[0]


def test_the_queries_run_on_sqlite_the_embedded_database():
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from call_downloader.db.models import Base, Call, OutboxEvent, QueueMessage

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.add_all(
            [
                OutboxEvent(
                    id=uuid.uuid4(),
                    type="dev.calldownloader.call.received.v1",
                    subject="x",
                    data={},
                    available_at=now - timedelta(seconds=120),
                ),
                OutboxEvent(
                    id=uuid.uuid4(),
                    type="dev.calldownloader.ai.retry.v1",
                    subject="x",
                    data={},
                    available_at=now + timedelta(hours=1),
                ),
                Call(
                    id=uuid.uuid4(),
                    source_id=uuid.uuid4(),
                    status="analyzed",
                    metadata_={},
                    updated_at=now - timedelta(seconds=600),
                ),
                QueueMessage(function="deliver", event_id="e", body=b"{}", dead=True),
            ]
        )
        s.commit()
    got = scrape(state.StateCollector(cache_seconds=0, connect=engine.connect))
    engine.dispose()
    assert got[("calldl_state_up", ())] == 1
    received = (("type", "dev.calldownloader.call.received.v1"),)
    assert got[("calldl_outbox_due_events", received)] == 1
    retry = (("type", "dev.calldownloader.ai.retry.v1"),)
    assert got[("calldl_outbox_due_events", retry)] == 0
    assert got[("calldl_outbox_unpublished_events", retry)] == 1
    assert 120 <= got[("calldl_outbox_oldest_due_age_seconds", ())] < 3600
    assert got[("calldl_calls_waiting", (("status", "analyzed"),))] == 1
    assert 600 <= got[("calldl_calls_oldest_waiting_age_seconds", (("status", "analyzed"),))]
    dead = (("function", "deliver"), ("state", "dead"))
    assert got[("calldl_embedded_queue_messages", dead)] == 1
