"""observe_event: outcome counters, duration, in-progress gauge, one log line per event with
the event's ids and trace."""

from __future__ import annotations

import logging

import pytest
from cloudevents.http import CloudEvent
from prometheus_client import REGISTRY

from call_downloader.events import types as ev
from call_downloader.observability import context, logs
from call_downloader.observability.instrument import (
    dispatch_scope,
    dispatched,
    note_skipped,
    observe_event,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FN = "unit-fn"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_event(type_: str = ev.CALL_RECEIVED, traceparent: str | None = TRACEPARENT) -> CloudEvent:
    attrs = {"type": type_, "source": "/test", "subject": "11111111-2222-3333-4444-555555555555"}
    if traceparent:
        attrs["traceparent"] = traceparent
    return CloudEvent(attrs, {"call_id": attrs["subject"]})


@pytest.fixture
def records():
    logs.install_record_factory()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Keep()
    logger = logging.getLogger("call_downloader.events")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old)


def outcome_count(outcome: str, type_: str = ev.CALL_RECEIVED) -> float:
    return value("calldl_events_handled_total", function=FN, type=type_, outcome=outcome)


def test_ok_outcome_duration_and_scope_seen_by_the_handler(records):
    seen = {}

    @observe_event(FN)
    def handle(event):
        seen.update(context.current())

    before, n = (
        outcome_count("ok"),
        value("calldl_event_handler_duration_seconds_count", function=FN, type=ev.CALL_RECEIVED),
    )
    event = make_event()
    handle(event)
    assert outcome_count("ok") == before + 1
    assert (
        value("calldl_event_handler_duration_seconds_count", function=FN, type=ev.CALL_RECEIVED)
        == n + 1
    )
    assert seen["function"] == FN
    assert seen["event_id"] == event["id"]
    assert seen["call_id"] == event["subject"]
    assert seen["trace_id"] == TRACEPARENT.split("-")[1]
    assert value("calldl_events_in_progress", function=FN) == 0
    (line,) = [r for r in records if getattr(r, "outcome", None)]
    assert line.outcome == "ok" and line.levelno == logging.INFO
    assert line.calldl_context["event_id"] == event["id"]
    assert line.calldl_context["trace_id"] == TRACEPARENT.split("-")[1]


def test_skipped_outcome():
    @observe_event(FN)
    def handle(event):
        note_skipped()

    before = outcome_count("skipped")
    handle(make_event())
    assert outcome_count("skipped") == before + 1


def test_a_raising_handler_counts_retry_and_reraises(records):
    @observe_event(FN)
    def handle(event):
        raise ConnectionError("database down")

    before = outcome_count("retry")
    with pytest.raises(ConnectionError):
        handle(make_event())
    assert outcome_count("retry") == before + 1
    assert value("calldl_events_in_progress", function=FN) == 0
    assert records[-1].levelno == logging.WARNING and records[-1].outcome == "retry"


def test_a_malformed_event_counts_poison():
    @observe_event(FN)
    def handle(event):
        raise ev.MalformedEvent("subject is not a call id")

    before = outcome_count("poison")
    with pytest.raises(ev.MalformedEvent):
        handle(make_event())
    assert outcome_count("poison") == before + 1


def test_foreign_types_are_labelled_other():
    @observe_event(FN)
    def handle(event):
        pass

    before = outcome_count("ok", "other")
    handle(make_event("com.example.anything"))
    assert outcome_count("ok", "other") == before + 1


def test_an_enclosing_scope_outcome_does_not_leak_into_the_handler():
    @observe_event(FN)
    def handle(event):
        pass

    before = outcome_count("ok")
    with context.scope(function="dispatcher"):
        context.bind(outcome="skipped")
        handle(make_event())
    assert outcome_count("ok") == before + 1


def test_dispatcher_scope_and_counters():
    event = make_event(ev.CALL_PROCESSED)
    with dispatch_scope("deliver", event):
        assert context.get("event_id") == event["id"]
        assert context.get("trace_id") == TRACEPARENT.split("-")[1]
    assert context.current() == {}
    before = value(
        "calldl_dispatcher_messages_total", function="deliver", type="other", outcome="poison"
    )
    dispatched("deliver", None, "poison")
    after = value(
        "calldl_dispatcher_messages_total", function="deliver", type="other", outcome="poison"
    )
    assert after == before + 1
