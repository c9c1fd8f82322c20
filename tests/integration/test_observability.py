"""Observability end to end: calls go through the `make run` server (real PostgreSQL, Redis and
RabbitMQ, or the embedded mode) while /metrics is scraped. Every counter and histogram moves
as it should, the exposition parses with prometheus-client's parser, the logs of one call can
be followed by its trace id through ingest, analyze-duration, call-ai and deliver, and no
secret reaches the log. Also: the HTTP hop of the dispatcher carries the trace, and the state
gauges read real PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from audio_fixtures import make_fixture
from fakes import FakeAI, Receiver
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
RECEIVED = "dev.calldownloader.call.received.v1"
ANALYZED = "dev.calldownloader.call.analyzed.v1"
AI_RETRY = "dev.calldownloader.ai.retry.v1"
PROCESSED = "dev.calldownloader.call.processed.v1"
DUE = "dev.calldownloader.delivery.due.v1"
STAGES = ("ingest", "analyze-duration", "call-ai", "deliver")


def _e2e_helpers() -> Any:
    """tests/e2e/conftest.py's server helpers (a conftest is not importable by name here)."""
    spec = importlib.util.spec_from_file_location("e2e_helpers", ROOT / "tests/e2e/conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E2E = _e2e_helpers()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Any) -> Samples:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):  # must parse
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return v(after, name, **labels) - v(before, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(value for (n, ls), value in samples.items() if n == name and want <= ls)


def post_call(server: Any, path: Path, external_id: str, **headers: str) -> httpx.Response:
    with open(path, "rb") as fh:
        return httpx.post(
            f"{server.url}/api/v1/calls",
            headers={**server.headers(), **headers},
            files={"file": (path.name, fh, "application/octet-stream")},
            data={"external_id": external_id},
            timeout=60,
        )


def log_lines(server: Any) -> list[dict[str, Any]]:
    lines = []
    for raw in server.log().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))  # every structured line is one JSON object
    return lines


def namespace_of(server: Any) -> str:
    return server.log_path.stem.removeprefix("server-")


@pytest.fixture(params=["services", "embedded"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def fake_ai() -> Iterator[FakeAI]:
    ai = FakeAI().start()
    yield ai
    ai.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=E2E.SECRET).start()
    yield r
    r.stop()


def test_one_call_moves_every_metric_and_can_be_followed_by_its_trace(
    tmp_path, database_url, db, fake_ai, receiver, mode
):
    server = E2E.start_server(tmp_path, database_url, fake_ai, receiver, mode)
    try:
        before = scrape(server)
        path = make_fixture("wav_pcm16_8k")
        r = post_call(server, path, "obs-1", traceparent=TRACEPARENT)
        assert r.status_code == 202, r.text
        assert r.headers["X-Trace-Id"] == TRACE_ID  # the caller's trace continues
        call_id = r.json()["id"]
        call = E2E.wait_for(lambda: (c := server.call(call_id))["status"] == "delivered" and c)

        # The last counters move right after the commits the API already shows: poll.
        def settled() -> Samples | None:
            now = scrape(server)
            done = (
                delta(
                    now,
                    before,
                    "calldl_dispatcher_messages_total",
                    function="deliver",
                    type=PROCESSED,
                    outcome="ok",
                )
                >= 1
                and v(now, "calldl_outbox_due_events", type=DUE) == 0
            )
            return now if done else None

        after = E2E.wait_for(settled)
        d = lambda name, **labels: delta(after, before, name, **labels)  # noqa: E731

        # HTTP: the ingest route by its rule, method, status; latency observed.
        route = dict(function="ingest", route="/api/v1/calls", method="POST")
        assert d("calldl_http_requests_total", **route, status="202") == 1
        assert d("calldl_http_request_duration_seconds_count", **route) == 1
        assert (
            d(
                "calldl_http_requests_total",
                function="calls",
                route="/api/v1/calls/<call_id>",
                method="GET",
                status="200",
            )
            >= 1
        )
        # Bytes ingested and the call counted.
        assert d("calldl_calls_received_total", origin="upload") == 1
        assert d("calldl_ingested_bytes_total", origin="upload") == path.stat().st_size
        # Each stage handled its event once, ok, with a duration.
        for function, type_, n in (
            ("analyze-duration", RECEIVED, 1),
            ("call-ai", ANALYZED, 1),
            ("deliver", PROCESSED, 1),
            # The first attempt is made inline by the fan-out: its delivery.due event, scheduled
            # as a fallback, was withdrawn once the attempt was recorded.
            ("deliver", DUE, 0),
        ):
            assert (
                d("calldl_events_handled_total", function=function, type=type_, outcome="ok") == n
            ), (function, type_)
            assert (
                d("calldl_event_handler_duration_seconds_count", function=function, type=type_) == n
            )
            assert (
                d("calldl_dispatcher_messages_total", function=function, type=type_, outcome="ok")
                == n
            )
        for function in ("analyze-duration", "call-ai", "deliver"):
            assert d("calldl_dispatcher_invoke_duration_seconds_count", function=function) >= 1
            assert v(after, "calldl_events_in_progress", function=function) == 0
        # Time from received to each stage, in order.
        sums = {}
        for stage in ("analyzed", "processed", "delivered"):
            assert d("calldl_call_stage_latency_seconds_count", stage=stage) == 1, stage
            sums[stage] = d("calldl_call_stage_latency_seconds_sum", stage=stage)
        assert 0 <= sums["analyzed"] <= sums["processed"] <= sums["delivered"]
        # Audio seconds: what analyze-duration measured, counted at both stages.
        for stage in ("analyzed", "processed"):
            assert d("calldl_audio_processed_seconds_total", stage=stage) == pytest.approx(
                call["duration_seconds"]
            )
        # The AI answered once; the destination took the webhook at the first attempt.
        assert d("calldl_ai_requests_total", outcome="result") == 1
        assert d("calldl_ai_request_duration_seconds_count", outcome="result") == 1
        assert d("calldl_ai_retries_total") == 0
        assert d("calldl_delivery_attempts_total", destination="default", outcome="delivered") == 1
        assert d("calldl_delivery_attempt_duration_seconds_count", destination="default") == 1
        # The relay published the three events of the call; the withdrawn fallback is gone.
        for type_ in (RECEIVED, ANALYZED, PROCESSED):
            assert d("calldl_outbox_published_total", type=type_) == 1, type_
        assert d("calldl_outbox_published_total", type=DUE) == 0
        assert d("calldl_outbox_publish_lag_seconds_count") == 3
        assert unpublished_events(server, call_id) == []
        # Nothing failed; nothing waits; the state query works.
        assert total(after, "calldl_calls_failed_total") == total(
            before, "calldl_calls_failed_total"
        )
        assert v(after, "calldl_state_up") == 1
        assert total(after, "calldl_calls_waiting") == 0
        assert v(after, "calldl_deliveries", status="dead") == 0
        assert total(after, "calldl_http_requests_in_progress") == 0

        # --- the logs of this call, by its trace id ----------------------------------------
        lines = log_lines(server)
        traced = [line for line in lines if line.get("trace_id") == TRACE_ID]
        assert {line.get("function") for line in traced} >= set(STAGES), traced
        assert {line.get("call_id") for line in traced} == {call_id}
        events = {line["event_id"] for line in traced if "event_id" in line}
        assert len(events) >= 3  # received, analyzed, processed
        handled = [line for line in traced if line.get("outcome") == "ok"]
        assert {line["function"] for line in handled} == {"analyze-duration", "call-ai", "deliver"}
        messages = {(line.get("function"), line["msg"]) for line in traced}
        assert ("call-ai", "AI request: result") in messages
        assert ("deliver", "delivery attempt to default: delivered (HTTP 204)") in messages
        ingest = [line for line in traced if line.get("function") == "ingest"]
        assert any(line["msg"] == "POST /api/v1/calls 202" for line in ingest)

        # --- nothing secret in the log -------------------------------------------------------
        text = server.log()
        for secret in (
            os.environ["JWT_SECRET"],
            os.environ["ADMIN_PASSWORD"],
            E2E.SECRET,
            E2E.SECRET.removeprefix("whsec_"),
            server.token(),
        ):
            assert secret not in text
    finally:
        E2E.stop_server(server)


class FlakyAI:
    """The AI service: 500 for recordings whose external id starts with fail-, else a result."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        meta = json.loads(request.form.get("metadata") or "{}")
        if str(meta.get("external_id", "")).startswith("fail-"):
            return Response("overloaded", 500)(environ, start_response)
        body = json.dumps({"transcript": "ok"})
        return Response(body, 200, mimetype="application/json")(environ, start_response)


class GoneDestination:
    """503 at the first attempt of each webhook, 410 Gone at the next."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.seen[request.headers.get("webhook-id", "")] += 1
            n = self.seen[request.headers.get("webhook-id", "")]
        return Response("", 503 if n == 1 else 410)(environ, start_response)


@pytest.fixture
def flaky_outside() -> Iterator[tuple[str, str]]:
    servers = [
        make_server("127.0.0.1", 0, app, threaded=True) for app in (FlakyAI(), GoneDestination())
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    ai, dest = (f"http://127.0.0.1:{s.server_port}" for s in servers)
    yield f"{ai}/analyze", f"{dest}/hook"
    for s in servers:
        s.shutdown()


def unpublished_events(server: Any, call_id: str) -> list[str]:
    """Types of the call's outbox events not published yet, in the server's own database."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from call_downloader.config import sqlalchemy_url
    from call_downloader.db.models import OutboxEvent

    engine = create_engine(sqlalchemy_url(server.database_url))
    try:
        with Session(engine) as s:
            return list(
                s.scalars(
                    select(OutboxEvent.type).where(
                        OutboxEvent.subject == call_id, OutboxEvent.published_at.is_(None)
                    )
                )
            )
    finally:
        engine.dispose()


def publish_to_queue(server: Any, function: str, body: bytes) -> None:
    """A message straight into a function's queue (RabbitMQ, or the embedded table)."""
    if server.mode == "embedded":
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from call_downloader.config import sqlalchemy_url
        from call_downloader.db.models import QueueMessage

        engine = create_engine(sqlalchemy_url(server.database_url))
        with Session(engine) as s:
            s.add(QueueMessage(function=function, event_id=uuid.uuid4().hex, body=body))
            s.commit()
        engine.dispose()
        return
    params = pika.URLParameters(os.environ["RABBITMQ_URL"])
    conn = pika.BlockingConnection(params)
    try:
        conn.channel().basic_publish("", f"{namespace_of(server)}.{function}", body)
    finally:
        conn.close()


def test_failures_move_the_error_and_dead_letter_metrics(
    tmp_path, database_url, db, fake_ai, receiver, flaky_outside, mode
):
    ai_url, dest_url = flaky_outside
    server = E2E.start_server(
        tmp_path,
        database_url,
        fake_ai,
        receiver,
        mode,
        AI_URL=ai_url,
        DELIVERY_URL=dest_url,
        AI_RETRY_DELAYS="0.1,0.1",
        DELIVERY_RETRY_DELAYS="0.1,0.1,0.1",
        DISPATCHER_MAX_ATTEMPTS="1",
    )
    try:
        before = scrape(server)
        path = make_fixture("wav_pcm16_8k")
        failing = post_call(server, path, "fail-ai-1").json()["id"]
        gone = post_call(server, path, "ok-1").json()["id"]
        for call_id in (failing, gone):
            E2E.wait_for(lambda c=call_id: server.call(c)["status"] == "failed")
        assert server.call(failing)["error"]["reason"] == "ai_unavailable"
        assert server.call(gone)["error"]["reason"] == "delivery_dead_lettered"

        # Poison: not even JSON. Malformed: a CloudEvent whose subject is no call id (the
        # handler refuses it; with DISPATCHER_MAX_ATTEMPTS=1 it is dead-lettered at once).
        publish_to_queue(server, "analyze-duration", b"\x00 not a cloudevent")
        bad = {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": "/test",
            "type": RECEIVED,
            "subject": "not-a-call-id",
            "data": {},
        }
        publish_to_queue(server, "analyze-duration", json.dumps(bad).encode())

        # A handler's refusal is a 400 in the answer table: poison, dead-lettered at once by
        # either transport.
        refused = "poison"

        def settled() -> Samples | None:
            now = scrape(server)
            ok = (
                delta(
                    now,
                    before,
                    "calldl_dispatcher_messages_total",
                    function="analyze-duration",
                    type="other",
                    outcome="poison",
                )
                == 1
                and delta(
                    now,
                    before,
                    "calldl_dispatcher_messages_total",
                    function="analyze-duration",
                    type=RECEIVED,
                    outcome=refused,
                )
                == 1
                and v(now, "calldl_deliveries", status="dead") == 1
            )
            return now if ok else None

        after = E2E.wait_for(settled)
        d = lambda name, **labels: delta(after, before, name, **labels)  # noqa: E731

        # AI: three transient answers, two retries scheduled, then the call failed.
        assert d("calldl_ai_requests_total", outcome="transient") == 3
        assert d("calldl_ai_request_duration_seconds_count", outcome="transient") == 3
        assert d("calldl_ai_retries_total") == 2
        assert (
            d("calldl_events_handled_total", function="call-ai", type=AI_RETRY, outcome="ok") == 2
        )
        assert d("calldl_calls_failed_total", stage="call-ai", reason="ai_unavailable") == 1
        # The other call: the AI answered; the destination said 503, then 410 Gone.
        assert d("calldl_ai_requests_total", outcome="result") == 1
        assert d("calldl_delivery_attempts_total", destination="default", outcome="retry") == 1
        assert d("calldl_delivery_attempts_total", destination="default", outcome="gone") == 1
        assert d("calldl_delivery_attempts_total", destination="default", outcome="delivered") == 0
        assert d("calldl_calls_failed_total", stage="deliver", reason="delivery_dead_lettered") == 1
        assert d("calldl_call_stage_latency_seconds_count", stage="processed") == 1
        assert d("calldl_call_stage_latency_seconds_count", stage="delivered") == 0
        # Dead letters: the delivery (state gauge) and the dispatcher's DLQ publishes.
        assert v(after, "calldl_deliveries", status="dead") == 1
        assert (
            d(
                "calldl_events_handled_total",
                function="analyze-duration",
                type=RECEIVED,
                outcome="poison",
            )
            == 1
        )
        if mode == "embedded":
            assert (
                v(
                    after,
                    "calldl_embedded_queue_messages",
                    function="analyze-duration",
                    state="dead",
                )
                == 2
            )
    finally:
        E2E.stop_server(server)


# --- the dispatcher's HTTP hop (containers: binary CloudEvents to the function) --------------


def test_http_invocation_carries_the_trace_into_the_function(database_url, db):
    import functions_framework
    from cloudevents.http import CloudEvent

    from call_downloader.events.dispatcher import http_invoker
    from call_downloader.observability import logs

    logs.install_record_factory()
    app = functions_framework.create_app(
        "analyze_duration", str(ROOT / "functions/analyze-duration/main.py")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("call_downloader.events", "call_downloader.http")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    http_before = value(
        "calldl_http_requests_total",
        function="analyze-duration",
        route="/",
        method="POST",
        status="200",
    )
    skipped_before = value(
        "calldl_events_handled_total", function="analyze-duration", type=RECEIVED, outcome="skipped"
    )
    try:
        call_id = str(uuid.uuid4())  # unknown call: acknowledged, nothing to do
        event = CloudEvent(
            {"type": RECEIVED, "source": "/test", "subject": call_id, "traceparent": TRACEPARENT},
            {"call_id": call_id},
        )
        http_invoker(f"http://127.0.0.1:{server.server_port}/")(event)
    finally:
        server.shutdown()
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert (
        value(
            "calldl_http_requests_total",
            function="analyze-duration",
            route="/",
            method="POST",
            status="200",
        )
        == http_before + 1
    )
    assert (
        value(
            "calldl_events_handled_total",
            function="analyze-duration",
            type=RECEIVED,
            outcome="skipped",
        )
        == skipped_before + 1
    )
    by_logger = {r.name: r for r in records}
    for name in ("call_downloader.events", "call_downloader.http"):
        ctx = by_logger[name].calldl_context
        assert ctx["trace_id"] == TRACE_ID, name
        assert ctx["event_id"] == event["id"] and ctx["call_id"] == call_id
        assert ctx["function"] == "analyze-duration"


def test_state_gauges_read_postgresql(database_url, db):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.events import outbox
    from call_downloader.observability.state import StateCollector

    with unit_of_work() as session:
        outbox.add_event(session, RECEIVED, uuid.uuid4(), {"x": 1})
        outbox.add_event(session, AI_RETRY, uuid.uuid4(), {"x": 1}, delay_seconds=3600)
    families = {f.name: f for f in StateCollector(cache_seconds=0).collect()}
    assert families["calldl_state_up"].samples[0].value == 1
    due = {s.labels["type"]: s.value for s in families["calldl_outbox_due_events"].samples}
    unpublished = {
        s.labels["type"]: s.value for s in families["calldl_outbox_unpublished_events"].samples
    }
    assert due == {RECEIVED: 1, AI_RETRY: 0}
    assert unpublished == {RECEIVED: 1, AI_RETRY: 1}
    assert families["calldl_outbox_oldest_due_age_seconds"].samples[0].value >= 0


def test_of_several_relay_replicas_one_exports_the_state(database_url, db):
    """Two relays (two exporter locks on PostgreSQL): one exports the state gauges, the
    other only says it does not; when the first goes away the second takes over."""
    from call_downloader.observability.state import ExporterLock, StateCollector

    first, second = ExporterLock(), ExporterLock()
    try:
        replicas = [
            StateCollector(cache_seconds=0, exporter=lock.held) for lock in (first, second)
        ]
        exported = [{f.name: f for f in r.collect()} for r in replicas]
        assert [e["calldl_state_exporter"].samples[0].value for e in exported] == [1, 0]
        assert "calldl_outbox_due_events" in exported[0]
        assert set(exported[1]) == {"calldl_state_exporter"}
        assert first.held() is True and second.held() is False  # stable while both live
        first._drop()  # the first replica's session ends (pod gone)
        assert second.held() is True
    finally:
        first._drop() if first._conn is not None else None
        second._drop() if second._conn is not None else None
