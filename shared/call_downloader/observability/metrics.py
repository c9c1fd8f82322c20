"""Prometheus metrics of every function (names and labels: docs/observability.md).

Correct under several gunicorn workers: when PROMETHEUS_MULTIPROC_DIR is set (the function
images set it) prometheus-client keeps each process's values in files there and `render()`
aggregates them at scrape time. Metric objects are built on first use, not at import (in
multiprocess mode building one opens a file).

Labels are bounded sets only: function, route (the matched rule, never the raw path), method,
status, event type, outcome, stage, destination name. Never a call id.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Event types this product emits; anything else (a foreign or malformed message) is "other",
# so a publisher cannot create label values at will.
KNOWN_EVENT_TYPES = frozenset(
    {
        "dev.calldownloader.call.received.v1",
        "dev.calldownloader.call.analyzed.v1",
        "dev.calldownloader.ai.retry.v1",
        "dev.calldownloader.call.processed.v1",
        "dev.calldownloader.delivery.due.v1",
    }
)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Seconds. Requests and handlers: milliseconds to the 10-minute function timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Time from `received` to a later stage: seconds to a day (retries wait hours).
STAGE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def event_type_label(value: object) -> str:
    return value if isinstance(value, str) and value in KNOWN_EVENT_TYPES else "other"


def method_label(value: object) -> str:
    return value if isinstance(value, str) and value in HTTP_METHODS else "other"


_LABEL_TEXT = re.compile(r"[^A-Za-z0-9_.:/<>-]")


def bounded_label(value: object, max_chars: int = 64) -> str:
    """An admin-set name (destination) as a label: short and plain."""
    text = _LABEL_TEXT.sub("_", str(value or "unknown"))
    return text[:max_chars] or "unknown"


class _Metrics:
    """Every metric of the product (one instance per process, built on first use)."""

    def __init__(self) -> None:
        d = os.environ.get(MULTIPROC_ENV)
        if d:
            os.makedirs(d, exist_ok=True)  # the images set the variable; the folder is ours
        # --- HTTP (every function's Flask app: functions' routes, /healthz, /metrics) ---
        self.http_requests = Counter(
            "calldl_http_requests_total",
            "HTTP requests answered, by function, matched route, method and status code.",
            ["function", "route", "method", "status"],
        )
        self.http_duration = Histogram(
            "calldl_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response headers).",
            ["function", "route", "method"],
            buckets=LATENCY_BUCKETS,
        )
        self.http_in_progress = Gauge(
            "calldl_http_requests_in_progress",
            "HTTP requests being handled.",
            ["function"],
            multiprocess_mode="livesum",
        )
        # --- CloudEvent handlers (analyze-duration, call-ai, deliver), whoever invokes them ---
        self.events_handled = Counter(
            "calldl_events_handled_total",
            "CloudEvents handled by a function, by type and outcome "
            "(ok, skipped: duplicate or stale, retry: raised so the trigger retries, "
            "poison: malformed).",
            ["function", "type", "outcome"],
        )
        self.event_duration = Histogram(
            "calldl_event_handler_duration_seconds",
            "Time a function spent handling one CloudEvent.",
            ["function", "type"],
            buckets=LATENCY_BUCKETS,
        )
        self.events_in_progress = Gauge(
            "calldl_events_in_progress",
            "CloudEvents being handled.",
            ["function"],
            multiprocess_mode="livesum",
        )
        # --- dispatcher (queue consumer: the local counterpart of a Knative trigger) ---
        self.dispatched = Counter(
            "calldl_dispatcher_messages_total",
            "Queue messages the dispatcher finished, by outcome (ok, retry: parked in a delay "
            "queue, dead_letter: sent to the DLQ after the last attempt, poison: malformed, "
            "sent to the DLQ at once, requeued: could not be parked, returned to the queue).",
            ["function", "type", "outcome"],
        )
        self.dispatch_duration = Histogram(
            "calldl_dispatcher_invoke_duration_seconds",
            "Time the dispatcher waited for a function to handle one event (in-process or HTTP).",
            ["function"],
            buckets=LATENCY_BUCKETS,
        )
        # --- the call's progress ---
        self.calls_received = Counter(
            "calldl_calls_received_total",
            "Calls accepted by ingest (committed), by origin (upload, url).",
            ["origin"],
        )
        self.bytes_ingested = Counter(
            "calldl_ingested_bytes_total",
            "Audio bytes accepted by ingest (committed), by origin.",
            ["origin"],
        )
        self.stage_latency = Histogram(
            "calldl_call_stage_latency_seconds",
            "Time from a call's `received` to reaching a later stage "
            "(analyzed, processed, delivered), observed when the stage is committed.",
            ["stage"],
            buckets=STAGE_BUCKETS,
        )
        self.audio_seconds = Counter(
            "calldl_audio_processed_seconds_total",
            "Seconds of audio measured (stage=analyzed) and analysed by the AI (processed).",
            ["stage"],
        )
        self.calls_failed = Counter(
            "calldl_calls_failed_total",
            "Calls marked failed, by stage and reason.",
            ["stage", "reason"],
        )
        # --- AI service ---
        self.ai_requests = Counter(
            "calldl_ai_requests_total",
            "Requests to the AI service by outcome (result, accepted, transient, permanent).",
            ["outcome"],
        )
        self.ai_duration = Histogram(
            "calldl_ai_request_duration_seconds",
            "Duration of one request to the AI service (upload included).",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
        )
        self.ai_retries = Counter(
            "calldl_ai_retries_total",
            "AI requests rescheduled after a transient failure.",
        )
        # --- deliveries ---
        self.delivery_attempts = Counter(
            "calldl_delivery_attempts_total",
            "Webhook delivery attempts by destination and outcome "
            "(delivered, retry, gone: 410 and dead-lettered, dead: retries exhausted).",
            ["destination", "outcome"],
        )
        self.delivery_duration = Histogram(
            "calldl_delivery_attempt_duration_seconds",
            "Duration of one webhook request to a destination.",
            ["destination"],
            buckets=LATENCY_BUCKETS,
        )
        # --- outbox relay ---
        self.outbox_published = Counter(
            "calldl_outbox_published_total",
            "Outbox events published to RabbitMQ (confirmed), by type.",
            ["type"],
        )
        self.outbox_publish_failures = Counter(
            "calldl_outbox_publish_failures_total",
            "Outbox publishes the broker did not confirm (retried).",
        )
        self.outbox_lag = Histogram(
            "calldl_outbox_publish_lag_seconds",
            "Time from an outbox event being due to its publication.",
            buckets=LATENCY_BUCKETS,
        )


_lock = threading.Lock()
_metrics: _Metrics | None = None


def m() -> _Metrics:
    """The process's metrics (built on first use)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# --- recording helpers (used by the instrumented modules) ------------------------------------


def after_commit(session: Any, fn: Callable[[], None]) -> None:
    """Run `fn` once `session`'s transaction commits (never if it rolls back), so a counter
    moves only for what really happened. Outside a transaction-capable session: now.
    `session`: an ORM Session, or a `db.engine.Transaction` (which keeps its own list)."""
    hook = getattr(session, "after_commit", None)
    if hook is not None:
        hook(fn)
        return
    if session is None or not hasattr(session, "info"):
        fn()
        return
    _install_session_hooks()
    session.info.setdefault("calldl_after_commit", []).append(fn)


_hooks_installed = False


def _install_session_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    with _lock:
        if _hooks_installed:
            return
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        def committed(session: Any) -> None:
            pending = session.info.pop("calldl_after_commit", None) or []
            for fn in pending:
                try:
                    fn()
                except Exception:  # a metric must never break a committed transaction
                    pass

        def rolled_back(session: Any, *args: Any) -> None:
            session.info.pop("calldl_after_commit", None)

        event.listen(Session, "after_commit", committed)
        event.listen(Session, "after_soft_rollback", rolled_back)
        _hooks_installed = True


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


def call_received(session: Any, size_bytes: int, origin: str) -> None:
    origin = origin if origin in ("upload", "url") else "other"

    def record() -> None:
        m().calls_received.labels(origin).inc()
        m().bytes_ingested.labels(origin).inc(max(0, int(size_bytes or 0)))

    after_commit(session, record)


def stage_reached(
    session: Any,
    stage: str,
    received_at: datetime | None,
    at: datetime | None,
    audio_seconds: float | None = None,
) -> None:
    """A call reached `stage` (analyzed, processed, delivered) at `at`."""
    seconds = _seconds_between(received_at, at)

    def record() -> None:
        if seconds is not None:
            m().stage_latency.labels(stage).observe(seconds)
        if audio_seconds and stage in ("analyzed", "processed"):
            m().audio_seconds.labels(stage).inc(max(0.0, float(audio_seconds)))

    after_commit(session, record)


def call_failed(session: Any, stage: str, reason: str) -> None:
    labels = (bounded_label(stage, 40), bounded_label(reason, 64))
    after_commit(session, lambda: m().calls_failed.labels(*labels).inc())


def ai_request(outcome: str, seconds: float | None) -> None:
    if outcome not in ("result", "accepted", "transient", "permanent"):
        outcome = "transient"
    m().ai_requests.labels(outcome).inc()
    if seconds is not None:
        m().ai_duration.labels(outcome).observe(max(0.0, seconds))
    # One line per AI request (the call's scope names the call and its trace).
    logging.getLogger("call_downloader.pipeline.call_ai").log(
        logging.INFO if outcome in ("result", "accepted") else logging.WARNING,
        "AI request: %s",
        outcome,
        extra={
            "outcome": outcome,
            "duration_ms": None if seconds is None else round(seconds * 1000, 1),
        },
    )


def ai_retry_scheduled(session: Any) -> None:
    after_commit(session, m().ai_retries.inc)


def delivery_attempt(
    session: Any, destination: str, outcome: str, latency_ms: float | None
) -> None:
    """outcome: delivered, retry, gone, dead (see calldl_delivery_attempts_total)."""
    dest = bounded_label(destination)

    def record() -> None:
        m().delivery_attempts.labels(dest, outcome).inc()
        if latency_ms is not None:
            m().delivery_duration.labels(dest).observe(max(0.0, latency_ms / 1000))

    after_commit(session, record)


def _attempt_error(attempt: Any) -> str:
    if attempt is None:
        return "destination disabled"
    return str(getattr(attempt, "error", None) or "no answer")


def delivery_attempt_done(session: Any, delivery: Any, attempt: Any) -> None:
    """After deliver recorded an attempt: its outcome from the delivery's new status
    (`attempt` is the net.webhooks AttemptOutcome, None when the destination was disabled)."""
    status = getattr(delivery, "status", None)
    if status == "delivered":
        outcome = "delivered"
    elif status == "dead":
        outcome = "gone" if getattr(attempt, "outcome", None) == "gone" else "dead"
    else:
        outcome = "retry"
    destination = getattr(getattr(delivery, "destination", None), "name", None)
    code = getattr(attempt, "status_code", None)
    logging.getLogger("call_downloader.pipeline.deliver").log(
        logging.INFO if outcome == "delivered" else logging.WARNING,
        "delivery attempt to %s: %s%s",
        destination,
        outcome,
        f" (HTTP {code})" if code else f" ({_attempt_error(attempt)})",
        extra={
            "outcome": outcome,
            "destination": destination,
            "webhook_id": getattr(delivery, "id", None),
            "attempt": getattr(delivery, "attempts", None),
        },
    )
    delivery_attempt(
        session, destination or "unknown", outcome, getattr(attempt, "latency_ms", None)
    )


def outbox_published(event_type: str, due_at: datetime | None) -> None:
    m().outbox_published.labels(event_type_label(event_type)).inc()
    lag = _seconds_between(due_at, datetime.now(UTC))
    if lag is not None:
        m().outbox_lag.observe(lag)


def outbox_publish_failed() -> None:
    m().outbox_publish_failures.inc()


# --- exposition ---------------------------------------------------------------------------

_extra_lock = threading.Lock()
_extra_collectors: list[Collector] = []


def add_collector(collector: Collector) -> None:
    """Include `collector` in this process's /metrics (e.g. the database state collector in
    the relay); idempotent per object."""
    with _extra_lock:
        if collector not in _extra_collectors:
            _extra_collectors.append(collector)


def remove_collector(collector: Collector) -> None:
    with _extra_lock:
        if collector in _extra_collectors:
            _extra_collectors.remove(collector)


class _Chain(Collector):
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterable[Any]:
        for collector in self.collectors:
            yield from collector.collect()


_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def prune_dead_processes(path: str) -> None:
    """Forget the live gauges of worker processes that are gone (gunicorn restarted one, or it
    crashed), so in-progress counts do not keep a dead worker's last value."""
    from prometheus_client import multiprocess

    dead: set[int] = set()
    for file in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_FILE.match(os.path.basename(file))
        if match is None:
            continue
        pid = int(match.group(1))
        if pid in dead or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # alive, another user's
            pass
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)


def registry() -> CollectorRegistry:
    """The registry a scrape reads: all workers' values (multiprocess mode) or this process's,
    plus the extra collectors."""
    path = os.environ.get(MULTIPROC_ENV)
    reg = CollectorRegistry(auto_describe=False)
    if path:
        from prometheus_client import multiprocess

        os.makedirs(path, exist_ok=True)
        prune_dead_processes(path)
        multiprocess.MultiProcessCollector(reg, path=path)
    else:
        reg.register(_Chain([REGISTRY]))
    with _extra_lock:
        extras = list(_extra_collectors)
    if extras:
        reg.register(_Chain(extras))
    return reg


def render() -> tuple[bytes, str]:
    """The exposition text of this process (or of all workers in multiprocess mode)."""
    m()  # every family is listed from the first scrape on, even before it moves
    return generate_latest(registry()), CONTENT_TYPE_LATEST
