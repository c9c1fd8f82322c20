"""Outbox -> relay -> RabbitMQ -> dispatcher, on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import OutboxEvent
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.events.answers import Answer
from call_downloader.events.broker import Publisher, connect
from call_downloader.events.dispatcher import ATTEMPT_HEADER, Dispatcher
from call_downloader.events.relay import Relay, publish_due

pytestmark = pytest.mark.integration


def wait_until(predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def queue_depth(name: str) -> int:
    conn = connect()
    try:
        return conn.channel().queue_declare(name, passive=True).method.message_count
    finally:
        conn.close()


def get_one(name: str):
    conn = connect()
    try:
        method, props, body = conn.channel().basic_get(name, auto_ack=True)
        return props, body
    finally:
        conn.close()


def test_relay_publishes_committed_events_once_and_marks_them(broker):
    call_id = uuid.uuid4()
    with unit_of_work() as session:
        row = outbox.add_event(session, ev.CALL_RECEIVED, call_id, {"call_id": str(call_id)})
        event_id = row.id
    publisher = Publisher()
    try:
        assert publish_due(publisher, broker) == 1
        assert publish_due(publisher, broker) == 0  # nothing left
    finally:
        publisher.close()
    queue = broker.queue("analyze-duration")
    wait_until(lambda: queue_depth(queue) == 1)
    props, body = get_one(queue)
    event = ev.parse_structured(body)
    assert event["id"] == str(event_id)
    assert event["type"] == ev.CALL_RECEIVED
    assert event["subject"] == str(call_id)
    assert ev.event_data(event) == {"call_id": str(call_id)}
    assert props.delivery_mode == 2
    with unit_of_work() as session:
        assert session.get(OutboxEvent, event_id).published_at is not None


def test_rolled_back_transaction_publishes_nothing(broker):
    with pytest.raises(RuntimeError):
        with unit_of_work() as session:
            outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {})
            raise RuntimeError("state change failed")
    publisher = Publisher()
    try:
        assert publish_due(publisher, broker) == 0
    finally:
        publisher.close()


def test_scheduled_event_waits_for_its_time(broker):
    with unit_of_work() as session:
        outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {}, delay_seconds=3600)
    publisher = Publisher()
    try:
        assert publish_due(publisher, broker) == 0
    finally:
        publisher.close()


def test_dispatcher_invokes_acks_retries_and_dead_letters(broker):
    seen: list[str] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def invoker(event):
        data = ev.event_data(event)
        with lock:
            seen.append(event["id"])
            if data.get("mode") == "flaky" and failures.get(event["id"], 0) < 1:
                failures[event["id"]] = failures.get(event["id"], 0) + 1
                raise RuntimeError("transient")
            if data.get("mode") == "always":
                raise RuntimeError("keeps failing")
            # Answers as a function over HTTP gives them (events.answers).
            if data.get("mode") == "refused":
                return Answer(400, "malformed event")
            if data.get("mode") == "busy" and failures.get(event["id"], 0) < 1:
                failures[event["id"]] = 1
                return Answer(429, "throttled", retry_after=1)
            return None

    with unit_of_work() as session:
        ok = outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"mode": "ok"})
        flaky = outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"mode": "flaky"})
        bad = outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"mode": "always"})
        refused = outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"mode": "refused"})
        busy = outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"mode": "busy"})
    # A poison message that is not a CloudEvent at all.
    poison_pub = Publisher()
    poison_pub.publish(broker.exchange, ev.CALL_RECEIVED, b"not json")
    poison_pub.close()

    relay = Relay()
    relay_thread = threading.Thread(target=relay.run, daemon=True)
    relay_thread.start()
    dispatcher = Dispatcher({"analyze-duration": invoker}, concurrency=2, max_attempts=2)
    dispatcher.start()
    try:
        dlq = broker.dead_letter_queue("analyze-duration")
        wait_until(lambda: queue_depth(dlq) == 3, timeout=30)
        wait_until(lambda: seen.count(str(flaky.id)) == 2)
        wait_until(lambda: seen.count(str(busy.id)) == 2)
    finally:
        dispatcher.stop()
        relay.stop()
        relay_thread.join(5)
    assert seen.count(str(ok.id)) == 1
    assert seen.count(str(bad.id)) == 2  # max_attempts
    assert seen.count(str(refused.id)) == 1  # a 400 is never retried
    bodies = []
    while queue_depth(dlq):
        props, body = get_one(dlq)
        bodies.append((props.headers or {}, body))
    ids, attempts = set(), []
    for headers, body in bodies:
        assert headers.get("x-cd-dead-letter-reason")
        if body != b"not json":
            ids.add(ev.parse_structured(body)["id"])
            attempts.append(headers.get(ATTEMPT_HEADER))
    assert ids == {str(bad.id), str(refused.id)}
    assert sorted(attempts, key=str) == [1, None]  # the 400 went there from its first try
    assert queue_depth(broker.queue("analyze-duration")) == 0


def test_relay_rounds_of_any_size_run_the_same_statements(broker):
    """One UPDATE whatever the round's size (`= ANY(array)` on PostgreSQL): an IN list would
    be a new statement per size, each prepared anew on each pooled connection."""
    from sqlalchemy import event, select

    from call_downloader.db.engine import get_engine

    def add(n: int) -> None:
        with unit_of_work() as session:
            for _ in range(n):
                call_id = uuid.uuid4()
                outbox.add_event(session, ev.CALL_RECEIVED, call_id, {"call_id": str(call_id)})

    def sql_of_round() -> list[str]:
        sent: list[str] = []

        def note(_conn, _cursor, statement, *_args) -> None:
            sent.append(statement)

        event.listen(get_engine(), "before_cursor_execute", note)
        try:
            published.append(publish_due(publisher, broker))
        finally:
            event.remove(get_engine(), "before_cursor_execute", note)
        return sent

    publisher = Publisher()
    published: list[int] = []
    try:
        add(2)
        first = sql_of_round()
        add(5)
        second = sql_of_round()
    finally:
        publisher.close()
    assert published == [2, 5]
    assert any(sql.startswith("UPDATE outbox") for sql in first)
    assert first == second  # the SQL text sent, parameters aside
    with unit_of_work() as session:
        left = session.scalars(select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None)))
        assert list(left) == []
