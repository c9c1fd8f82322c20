"""The recording helpers move the right series, only after a commit, with bounded labels; the
exposition parses with prometheus-client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from call_downloader.observability import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_counters_move_only_when_the_transaction_commits(session):
    before = value("calldl_calls_received_total", origin="upload")
    bytes_before = value("calldl_ingested_bytes_total", origin="upload")
    session.execute(text("SELECT 1"))
    metrics.call_received(session, 1234, "upload")
    assert value("calldl_calls_received_total", origin="upload") == before  # not yet
    session.rollback()
    session.commit()  # a later commit does not replay what was rolled back
    assert value("calldl_calls_received_total", origin="upload") == before

    session.execute(text("SELECT 1"))
    metrics.call_received(session, 1234, "upload")
    session.commit()
    assert value("calldl_calls_received_total", origin="upload") == before + 1
    assert value("calldl_ingested_bytes_total", origin="upload") == bytes_before + 1234
    session.commit()  # nothing pending: no double count
    assert value("calldl_calls_received_total", origin="upload") == before + 1


def test_without_a_session_the_helper_records_at_once():
    before = value("calldl_calls_failed_total", stage="call-ai", reason="ai_rejected")
    metrics.call_failed(None, "call-ai", "ai_rejected")
    assert value("calldl_calls_failed_total", stage="call-ai", reason="ai_rejected") == before + 1


def test_stage_latency_is_the_time_since_received(session):
    received = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    count = value("calldl_call_stage_latency_seconds_count", stage="processed")
    total = value("calldl_call_stage_latency_seconds_sum", stage="processed")
    le_10 = value("calldl_call_stage_latency_seconds_bucket", stage="processed", le="10.0")
    audio = value("calldl_audio_processed_seconds_total", stage="processed")
    session.execute(text("SELECT 1"))
    metrics.stage_reached(
        session, "processed", received, received + timedelta(seconds=7.5), audio_seconds=61.25
    )
    session.commit()
    assert value("calldl_call_stage_latency_seconds_count", stage="processed") == count + 1
    assert value("calldl_call_stage_latency_seconds_sum", stage="processed") == total + 7.5
    bucket = value("calldl_call_stage_latency_seconds_bucket", stage="processed", le="10.0")
    assert bucket == le_10 + 1
    assert value("calldl_audio_processed_seconds_total", stage="processed") == audio + 61.25


def test_naive_timestamps_are_taken_as_utc(session):
    received = datetime(2026, 1, 1, 12, 0, 0)  # SQLite gives naive values back
    total = value("calldl_call_stage_latency_seconds_sum", stage="analyzed")
    metrics.stage_reached(None, "analyzed", received, received + timedelta(seconds=2))
    assert value("calldl_call_stage_latency_seconds_sum", stage="analyzed") == total + 2


@pytest.mark.parametrize(
    ("status", "attempt_outcome", "expected"),
    [
        ("delivered", "delivered", "delivered"),
        ("pending", "retry", "retry"),
        ("dead", "gone", "gone"),
        ("dead", "retry", "dead"),
        ("pending", None, "retry"),  # destination disabled, retries left
    ],
)
def test_delivery_attempt_outcome_follows_the_delivery_status(status, attempt_outcome, expected):
    delivery = SimpleNamespace(status=status, destination=SimpleNamespace(name="crm prod"))
    attempt = (
        None
        if attempt_outcome is None
        else SimpleNamespace(outcome=attempt_outcome, latency_ms=250)
    )
    dest = "crm_prod"  # spaces are not kept in label values
    before = value("calldl_delivery_attempts_total", destination=dest, outcome=expected)
    n = value("calldl_delivery_attempt_duration_seconds_count", destination=dest)
    metrics.delivery_attempt_done(None, delivery, attempt)
    assert value("calldl_delivery_attempts_total", destination=dest, outcome=expected) == before + 1
    timed = value("calldl_delivery_attempt_duration_seconds_count", destination=dest)
    assert timed == n + (0 if attempt is None else 1)


def test_ai_request_outcomes_and_latency():
    before = value("calldl_ai_requests_total", outcome="permanent")
    n = value("calldl_ai_request_duration_seconds_count", outcome="permanent")
    metrics.ai_request("permanent", 0.3)
    assert value("calldl_ai_requests_total", outcome="permanent") == before + 1
    assert value("calldl_ai_request_duration_seconds_count", outcome="permanent") == n + 1
    weird = value("calldl_ai_requests_total", outcome="transient")
    metrics.ai_request("something-else", None)
    assert value("calldl_ai_requests_total", outcome="transient") == weird + 1


def test_label_values_are_bounded():
    assert metrics.event_type_label("dev.calldownloader.call.received.v1").endswith("received.v1")
    assert metrics.event_type_label("attacker.chosen.type") == "other"
    assert metrics.event_type_label(None) == "other"
    assert metrics.method_label("GET") == "GET"
    assert metrics.method_label("BREW") == "other"
    assert len(metrics.bounded_label("x" * 500)) == 64
    assert metrics.bounded_label('a"b\nc') == "a_b_c"
    before = value("calldl_calls_failed_total", stage="s", reason="r_" * 32)
    metrics.call_failed(None, "s", "r " * 200)
    assert value("calldl_calls_failed_total", stage="s", reason="r_" * 32) == before + 1


def test_outbox_publication_lag():
    n = value("calldl_outbox_publish_lag_seconds_count")
    published = value("calldl_outbox_published_total", type="other")
    metrics.outbox_published("not.ours", datetime.now(UTC) - timedelta(seconds=3))
    assert value("calldl_outbox_publish_lag_seconds_count") == n + 1
    assert value("calldl_outbox_published_total", type="other") == published + 1


def test_render_parses_and_lists_every_family(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    for name in (
        "calldl_http_requests",
        "calldl_http_request_duration_seconds",
        "calldl_http_requests_in_progress",
        "calldl_events_handled",
        "calldl_event_handler_duration_seconds",
        "calldl_events_in_progress",
        "calldl_dispatcher_messages",
        "calldl_dispatcher_invoke_duration_seconds",
        "calldl_calls_received",
        "calldl_ingested_bytes",
        "calldl_call_stage_latency_seconds",
        "calldl_audio_processed_seconds",
        "calldl_calls_failed",
        "calldl_ai_requests",
        "calldl_ai_request_duration_seconds",
        "calldl_ai_retries",
        "calldl_delivery_attempts",
        "calldl_delivery_attempt_duration_seconds",
        "calldl_outbox_published",
        "calldl_outbox_publish_failures",
        "calldl_outbox_publish_lag_seconds",
    ):
        assert name in families, name
    assert "process_cpu_seconds" in families or "python_info" in families


def test_extra_collectors_are_included_and_removable(monkeypatch):
    from prometheus_client.core import GaugeMetricFamily

    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)

    class One:
        def collect(self):
            g = GaugeMetricFamily("calldl_test_extra", "test")
            g.add_metric([], 42)
            yield g

    collector = One()
    metrics.add_collector(collector)
    metrics.add_collector(collector)  # idempotent
    try:
        body = metrics.render()[0].decode()
        assert body.count("calldl_test_extra 42.0") == 1
    finally:
        metrics.remove_collector(collector)
    assert "calldl_test_extra" not in metrics.render()[0].decode()
