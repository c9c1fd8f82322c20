"""call-ai: send the recording to the AI service and keep its result (SPEC 3.2).

Retries are scheduled events (outbox rows with a future `available_at`) following
AI_RETRY_DELAYS with jitter, so a worker never sleeps on a failing AI. A stored result is never
requested again for the same run; only an operator's re-run (a new run number) does that.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
from cloudevents.http import CloudEvent
from sqlalchemy.orm import Session

from call_downloader.ai.client import AiClient, AiOutcome
from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import AiResult, Call, CallStatus, utcnow
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.http.errors import ApiError
from call_downloader.net.backoff import backoff_delay
from call_downloader.net.transport import new_client
from call_downloader.observability import context as obs_context
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped, observe_event
from call_downloader.pipeline import ai_callback
from call_downloader.pipeline.common import (
    already_processed,
    call_id_of,
    check_storable,
    fail_call,
    lock_call,
    mark_processed,
    record,
    traceparent_of,
)
from call_downloader.storage.audio import spooled_audio
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "call-ai"
STAGE = "call-ai"


def ai_client(http: httpx.Client | None = None) -> AiClient:
    """The AI client for the current settings (cheap to build; settings can change in tests),
    sending with `http` (see `pipeline.outbound`: a fresh client sharing one SSL context)."""
    s = get_settings()
    return AiClient(
        url=s.ai_url,
        protocol=s.ai_protocol,
        model=s.ai_model,
        api_key=s.ai_api_key,
        timeout=s.ai_timeout_seconds,
        client=http,
    )


def _has_result(call: Call) -> bool:
    return call.result_version is not None and call.result_version >= call.ai_run


def _wants_ai(call: Call | None, data: dict[str, Any], event_type: str) -> bool:
    """Is this event still the next step of the call's current AI run?"""
    if call is None or call.status not in (CallStatus.ANALYZED, CallStatus.PROCESSING):
        return False
    if int(data.get("run", call.ai_run)) != call.ai_run or _has_result(call):
        return False
    if event_type == ev.AI_RETRY:
        # Only the retry the last failure scheduled; stale copies are dropped.
        return int(data.get("attempt", 0)) == call.ai_attempts + 1
    # The first attempt of the run; a redelivered copy (a crash before the attempt was
    # recorded) tries again rather than leaving the call waiting.
    return call.ai_attempts == 0


def store_result(session: Session, call: Call, result: Any, trace: str | None, via: str) -> None:
    version = (call.result_version or 0) + 1
    session.add(AiResult(id=uuid.uuid4(), call_id=call.id, version=version, result=result))
    call.result_version = version
    call.ai_callback_jti = None
    call.status = CallStatus.PROCESSED
    call.processed_at = utcnow()
    metrics.stage_reached(
        session, "processed", call.received_at, call.processed_at, call.duration_seconds
    )
    call.error_stage = call.error_reason = call.error_detail = None
    record(session, call.id, STAGE, "result_stored", version=version, via=via)
    outbox.add_event(
        session,
        ev.CALL_PROCESSED,
        call.id,
        {"call_id": str(call.id), "result_version": version},
        traceparent=trace,
    )


@observe_event(CONSUMER)
def handle(event: CloudEvent) -> None:
    call_id = call_id_of(event)
    event_id, event_type, trace = str(event["id"]), str(event["type"]), traceparent_of(event)
    data = ev.event_data(event)
    settings = get_settings()
    with unit_of_work() as session:
        if already_processed(session, CONSUMER, event_id):
            return
        call = lock_call(session, call_id)
        if not _wants_ai(call, data, event_type):
            mark_processed(session, CONSUMER, event_id)
            note_skipped()
            return
        assert call is not None
        if event_type == ev.AI_RETRY and call.ai_callback_jti is not None:
            record(session, call.id, STAGE, "callback_timeout")
        run, attempt_no = call.ai_run, call.ai_attempts + 1
        call.status = CallStatus.PROCESSING
        token, jti = ai_callback.make_token(call.id, run, settings.ai_callback_timeout_seconds)
        # Valid from now: an asynchronous AI may call back before its 202 is even recorded.
        call.ai_callback_jti = jti
        metadata = {
            "call_id": str(call.id),
            "external_id": call.external_id,
            "duration_seconds": call.duration_seconds,
            "format": call.format,
            "metadata": call.metadata_ or {},
        }
        filename = call.filename or f"{call.id}.{call.format or 'bin'}"
        content_type = f"audio/{call.format}" if call.format else "application/octet-stream"

    started = utcnow()
    outcome: AiOutcome
    if not settings.ai_url:
        outcome = AiOutcome(kind="transient", reason="AI_URL is not configured")
    else:
        with spooled_audio(call_id) as path, new_client() as http:
            outcome = ai_client(http).analyze(
                path, filename, content_type, metadata, ai_callback.callback_url(token)
            )
    took_ms = round((utcnow() - started).total_seconds() * 1000, 1)
    faults.point("call_ai.after_answer_before_store")  # the AI answered; nothing kept yet
    if outcome.kind == "result":
        try:
            check_storable(outcome.result)
        except ValueError as exc:  # e.g. NaN or NUL, which jsonb refuses: ask again, then fail
            outcome = AiOutcome(kind="transient", reason=f"the AI's result cannot be stored: {exc}")
    if settings.ai_url:
        metrics.ai_request(outcome.kind, took_ms / 1000)

    with unit_of_work() as session:
        if already_processed(session, CONSUMER, event_id):
            return
        call = lock_call(session, call_id)
        mark_processed(session, CONSUMER, event_id)
        if (
            call is None
            or call.ai_run != run
            or _has_result(call)
            or call.status not in (CallStatus.PROCESSING, CallStatus.ANALYZED)
        ):
            return  # an operator acted meanwhile, or a callback already delivered the result
        if outcome.kind == "result":
            call.ai_attempts = attempt_no
            store_result(session, call, outcome.result, trace, via="response")
            record(session, call.id, STAGE, "ai_answered", attempt=attempt_no, took_ms=took_ms)
        elif outcome.kind == "accepted":
            call.ai_attempts = attempt_no - 1  # not a failure: no retry budget used
            call.ai_callback_jti = jti
            record(session, call.id, STAGE, "ai_accepted", attempt=attempt_no, took_ms=took_ms)
            # If the callback never comes, this re-sends the recording.
            outbox.add_event(
                session,
                ev.AI_RETRY,
                call.id,
                {"call_id": str(call.id), "run": run, "attempt": call.ai_attempts + 1},
                delay_seconds=settings.ai_callback_timeout_seconds,
                traceparent=trace,
            )
        elif outcome.kind == "permanent":
            call.ai_attempts = attempt_no
            call.ai_callback_jti = None
            fail_call(session, call, STAGE, "ai_rejected", outcome.reason or "rejected", trace)
        else:  # transient
            call.ai_attempts = attempt_no
            call.ai_callback_jti = None  # that attempt's callback URL is void
            delays = settings.ai_retry_delays
            if attempt_no > len(delays):
                fail_call(
                    session,
                    call,
                    STAGE,
                    "ai_unavailable",
                    f"gave up after {attempt_no} attempts: {outcome.reason}",
                    trace,
                )
                return
            delay = backoff_delay(attempt_no, delays, outcome.retry_after)
            record(
                session,
                call.id,
                STAGE,
                "ai_retry_scheduled",
                attempt=attempt_no,
                reason=(outcome.reason or "")[:300],
                retry_in_seconds=round(delay, 2),
            )
            metrics.ai_retry_scheduled(session)
            outbox.add_event(
                session,
                ev.AI_RETRY,
                call.id,
                {"call_id": str(call.id), "run": run, "attempt": attempt_no + 1},
                delay_seconds=delay,
                traceparent=trace,
            )


def accept_callback(token: str, result: Any) -> tuple[int, str]:
    """Store a result posted by an asynchronous AI. Returns (HTTP status, message)."""
    claims = ai_callback.verify_token(token)
    if claims is None:
        return 401, "invalid or expired callback token"
    obs_context.bind(call_id=claims.call_id)
    try:
        check_storable(result)
    except ValueError as exc:  # NaN, NUL, ...: jsonb would refuse it at commit (a 500)
        raise ApiError(422, "invalid_result", f"the result cannot be stored: {exc}") from None
    with unit_of_work() as session:
        call = lock_call(session, claims.call_id)
        if call is None or call.ai_run != claims.run or call.ai_callback_jti != claims.jti:
            return 409, "this callback is not expected (already received or superseded)"
        trace = call_trace(session, call)
        obs_context.bind(traceparent=trace)  # the callback's log lines follow the call's trace
        store_result(session, call, result, trace, via="callback")
        record(session, call.id, STAGE, "ai_callback_received")
    return 200, "result stored"


def call_trace(session: Session, call: Call) -> str | None:
    """Continue the call's trace from its most recent event."""
    from sqlalchemy import select

    from call_downloader.db.models import OutboxEvent

    return session.execute(
        select(OutboxEvent.traceparent)
        .where(OutboxEvent.subject == str(call.id))
        .order_by(OutboxEvent.created_at.desc())
        .limit(1)
    ).scalar()
