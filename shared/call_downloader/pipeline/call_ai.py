"""call-ai: send the recording to the AI service and keep its result (SPEC 3.2).

Retries are scheduled events (outbox rows with a future `available_at`) following
AI_RETRY_DELAYS with jitter, so a worker never sleeps on a failing AI. A stored result is never
requested again for the same run; only an operator's re-run (a new run number) does that.
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

import httpx
from cloudevents.http import CloudEvent
from sqlalchemy import bindparam, exists, select

from call_downloader.ai.client import AiClient, AiOutcome
from call_downloader.audio.media import extension, media_type
from call_downloader.config import get_settings
from call_downloader.db.engine import transaction
from call_downloader.db.models import AiResult, CallStatus, OutboxEvent, utcnow
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
    CALLS,
    PROCESSED,
    add_timeline,
    call_id_of,
    check_storable,
    claim_and_lock,
    claim_event,
    fail_call_row,
    insert_statement,
    lock_call_row,
    timeline_entry,
    traceparent_of,
    update_call,
)
from call_downloader.storage.audio import spooled_audio
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "call-ai"
STAGE = "call-ai"
AI_RESULTS = AiResult.__table__
OUTBOX = OutboxEvent.__table__

# What the stage reads of the call (one locked row) before asking the AI, and after it.
ASK_COLUMNS = (
    CALLS.c.status,
    CALLS.c.ai_run,
    CALLS.c.ai_attempts,
    CALLS.c.result_version,
    CALLS.c.ai_callback_jti,
    CALLS.c.external_id,
    CALLS.c.duration_seconds,
    CALLS.c.format,
    CALLS.c.filename,
    CALLS.c.metadata.label("metadata_"),
)
STORE_COLUMNS = (
    CALLS.c.status,
    CALLS.c.ai_run,
    CALLS.c.ai_attempts,
    CALLS.c.result_version,
    CALLS.c.ai_callback_jti,
    CALLS.c.received_at,
    CALLS.c.duration_seconds,
)


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


def _has_result(call: Any) -> bool:
    return call.result_version is not None and call.result_version >= call.ai_run


def _wants_ai(call: Any, data: dict[str, Any], event_type: str) -> bool:
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


# Statements are built once, on first use, and executed with parameters (see `common`).
@cache
def _ask_query() -> Any:
    """The call's row locked (ASK_COLUMNS) and a column telling whether this consumer applied
    the event already: read with the lock, it saves a statement on every event.
    Parameters: call_id, event_id."""
    event_processed = (
        exists()
        .where(PROCESSED.c.consumer == CONSUMER, PROCESSED.c.event_id == bindparam("event_id"))
        .label("event_processed")
    )
    return (
        select(*ASK_COLUMNS, event_processed)
        .where(CALLS.c.id == bindparam("call_id"))
        .with_for_update()
    )


@cache
def _trace_query() -> Any:
    """The traceparent of the most recent event about a call. Parameter: subject."""
    return (
        select(OUTBOX.c.traceparent)
        .where(OUTBOX.c.subject == bindparam("subject"))
        .order_by(OUTBOX.c.created_at.desc())
        .limit(1)
    )


def store_result(
    tx: Any,
    call_id: uuid.UUID,
    call: Any,
    result: Any,
    trace: str | None,
    via: str,
    *,
    next_entry: tuple[str, dict[str, Any]],
    **values: Any,
) -> None:
    """Keep `result` as the call's next result version: the call (with `values`) processed,
    the timeline's `result_stored` and then `next_entry`, and the call.processed event.
    `call`: the locked row (STORE_COLUMNS)."""
    version = (call.result_version or 0) + 1
    processed_at = utcnow()
    update_call(
        tx,
        call_id,
        result_version=version,
        ai_callback_jti=None,
        status=CallStatus.PROCESSED,
        processed_at=processed_at,
        error_stage=None,
        error_reason=None,
        error_detail=None,
        **values,
    )
    tx.execute(
        insert_statement(AI_RESULTS),
        {"id": uuid.uuid4(), "call_id": call_id, "version": version, "result": result},
    )
    metrics.stage_reached(tx, "processed", call.received_at, processed_at, call.duration_seconds)
    next_event, next_detail = next_entry
    outbox.add_event(
        tx,
        ev.CALL_PROCESSED,
        call_id,
        {"call_id": str(call_id), "result_version": version},
        traceparent=trace,
        timeline=[
            timeline_entry(call_id, STAGE, "result_stored", version=version, via=via),
            timeline_entry(call_id, STAGE, next_event, **next_detail),
        ],
    )


@observe_event(CONSUMER)
def handle(event: CloudEvent) -> None:
    call_id = call_id_of(event)
    event_id, event_type, trace = str(event["id"]), str(event["type"]), traceparent_of(event)
    data = ev.event_data(event)
    settings = get_settings()
    with transaction() as tx:
        call = tx.execute(_ask_query(), {"call_id": call_id, "event_id": event_id}).first()
        if call is not None and call.event_processed:
            # Applied already. The call's state alone would not tell: after a 202 it still
            # looks like it waits for its first attempt.
            note_skipped()
            return
        if not _wants_ai(call, data, event_type):
            claim_event(tx, CONSUMER, event_id)
            note_skipped()
            return
        if event_type == ev.AI_RETRY and call.ai_callback_jti is not None:
            add_timeline(tx, call_id, STAGE, "callback_timeout")
        run, attempt_no = call.ai_run, call.ai_attempts + 1
        token, jti = ai_callback.make_token(call_id, run, settings.ai_callback_timeout_seconds)
        # Valid from now: an asynchronous AI may call back before its 202 is even recorded.
        update_call(tx, call_id, status=CallStatus.PROCESSING, ai_callback_jti=jti)
        metadata = {
            "call_id": str(call_id),
            "external_id": call.external_id,
            "duration_seconds": call.duration_seconds,
            "format": call.format,
            "metadata": call.metadata_ or {},
        }
        filename = call.filename or f"{call_id}.{extension(call.format)}"
        content_type = media_type(call.format)

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

    with transaction() as tx:
        claimed, call = claim_and_lock(tx, CONSUMER, event_id, call_id, *STORE_COLUMNS)
        if not claimed:
            return
        if (
            call is None
            or call.ai_run != run
            or _has_result(call)
            or call.status not in (CallStatus.PROCESSING, CallStatus.ANALYZED)
        ):
            return  # an operator acted meanwhile, or a callback already delivered the result
        if outcome.kind == "result":
            store_result(
                tx,
                call_id,
                call,
                outcome.result,
                trace,
                via="response",
                next_entry=("ai_answered", {"attempt": attempt_no, "took_ms": took_ms}),
                ai_attempts=attempt_no,
            )
        elif outcome.kind == "accepted":
            # Not a failure: no retry budget used. Usually the row holds these values already
            # (written before the request): then the call is left as it is.
            if (call.ai_attempts, call.ai_callback_jti) != (attempt_no - 1, jti):
                update_call(tx, call_id, ai_attempts=attempt_no - 1, ai_callback_jti=jti)
            add_timeline(tx, call_id, STAGE, "ai_accepted", attempt=attempt_no, took_ms=took_ms)
            # If the callback never comes, this re-sends the recording.
            outbox.add_event(
                tx,
                ev.AI_RETRY,
                call_id,
                {"call_id": str(call_id), "run": run, "attempt": attempt_no},
                delay_seconds=settings.ai_callback_timeout_seconds,
                traceparent=trace,
            )
        elif outcome.kind == "permanent":
            fail_call_row(
                tx,
                call_id,
                STAGE,
                "ai_rejected",
                outcome.reason or "rejected",
                ai_attempts=attempt_no,
                ai_callback_jti=None,
            )
        else:  # transient; that attempt's callback URL is void
            delays = settings.ai_retry_delays
            if attempt_no > len(delays):
                fail_call_row(
                    tx,
                    call_id,
                    STAGE,
                    "ai_unavailable",
                    f"gave up after {attempt_no} attempts: {outcome.reason}",
                    ai_attempts=attempt_no,
                    ai_callback_jti=None,
                )
                return
            update_call(tx, call_id, ai_attempts=attempt_no, ai_callback_jti=None)
            delay = backoff_delay(attempt_no, delays, outcome.retry_after)
            add_timeline(
                tx,
                call_id,
                STAGE,
                "ai_retry_scheduled",
                attempt=attempt_no,
                reason=(outcome.reason or "")[:300],
                retry_in_seconds=round(delay, 2),
            )
            metrics.ai_retry_scheduled(tx)
            outbox.add_event(
                tx,
                ev.AI_RETRY,
                call_id,
                {"call_id": str(call_id), "run": run, "attempt": attempt_no + 1},
                delay_seconds=delay,
                traceparent=trace,
            )


def accept_callback(claims: ai_callback.CallbackClaims, result: Any) -> tuple[int, str]:
    """Store a result posted by an asynchronous AI with a verified callback token
    (`ai_callback.verify_token`). Returns (HTTP status, message)."""
    obs_context.bind(call_id=claims.call_id)
    try:
        check_storable(result)
    except ValueError as exc:  # NaN, NUL, ...: jsonb would refuse it at commit (a 500)
        raise ApiError(422, "invalid_result", f"the result cannot be stored: {exc}") from None
    with transaction() as tx:
        call = lock_call_row(tx, claims.call_id, *STORE_COLUMNS)
        if call is None or call.ai_run != claims.run or call.ai_callback_jti != claims.jti:
            return 409, "this callback is not expected (already received or superseded)"
        # Read once the row is locked: the latest event, even one committed while we waited.
        trace = trace_of(tx, claims.call_id)
        obs_context.bind(traceparent=trace)  # the callback's log lines follow the call's trace
        store_result(
            tx,
            claims.call_id,
            call,
            result,
            trace,
            via="callback",
            next_entry=("ai_callback_received", {}),
        )
    return 200, "result stored"


def trace_of(tx: Any, call_id: uuid.UUID) -> str | None:
    """Continue the call's trace from its most recent event."""
    return tx.execute(_trace_query(), {"subject": str(call_id)}).scalar()


def call_trace(session: Any, call: Any) -> str | None:
    """`trace_of` for the operator repairs (an ORM session and a `Call`): an ORM select, so the
    session flushes what is pending first, as it always did."""
    return session.execute(
        select(OutboxEvent.traceparent)
        .where(OutboxEvent.subject == str(call.id))
        .order_by(OutboxEvent.created_at.desc())
        .limit(1)
    ).scalar()
