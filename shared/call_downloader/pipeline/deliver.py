"""deliver: post the AI result to each destination as a Standard Webhooks request (SPEC 3.3).

Each (call, destination, result version) is one delivery whose id is the `webhook-id`,
stable across retries. Attempts follow DELIVERY_RETRY_DELAYS (scheduled outbox events), honour
Retry-After, stop at 410 Gone, never follow redirects, and end dead-lettered after the last one.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from cloudevents.http import CloudEvent
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import (
    AiResult,
    Call,
    CallStatus,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    utcnow,
)
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.net.backoff import backoff_delay
from call_downloader.net.ssrf import Policy
from call_downloader.net.transport import new_client
from call_downloader.net.webhooks import post_webhook, sign_headers
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped, observe_event
from call_downloader.pipeline.common import (
    already_processed,
    call_id_of,
    fail_call,
    lock_call,
    mark_processed,
    record,
    traceparent_of,
)
from call_downloader.pipeline.destinations import enabled_destinations, signing_secrets
from call_downloader.pipeline.views import webhook_call
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "deliver"
STAGE = "deliver"


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@observe_event(CONSUMER)
def handle(event: CloudEvent) -> None:
    if event["type"] == ev.CALL_PROCESSED:
        _fan_out(event)
    elif event["type"] == ev.DELIVERY_DUE:
        _attempt(event)
    else:
        raise ev.MalformedEvent(f"deliver does not handle {event['type']}")


def first_attempt_fallback_seconds() -> float:
    """When the `delivery.due` event of a first attempt made inline falls due: after the
    attempt's own time limit, so a live attempt is not duplicated."""
    return get_settings().delivery_timeout_seconds + 30.0


def _fan_out(event: CloudEvent) -> None:
    """One delivery per enabled destination, each attempted at once.

    The first attempts are made right here, after the deliveries are committed: that saves an
    outbox row's trip through the relay, the broker and the dispatcher per call. Each
    delivery's `delivery.due` event for attempt 1 is committed with it, due only after
    `first_attempt_fallback_seconds()`: if this process dies before an attempt is recorded,
    that event makes it (same webhook-id); once the attempt is recorded, the event is withdrawn
    (or, if already published, skipped as stale).
    """
    call_id, event_id, trace = call_id_of(event), str(event["id"]), traceparent_of(event)
    version = int(ev.event_data(event).get("result_version", 0))
    first_attempts: list[tuple[str, uuid.UUID, _Prepared]] = []
    with unit_of_work() as session:
        if already_processed(session, CONSUMER, event_id):
            return
        mark_processed(session, CONSUMER, event_id)
        call = session.get(Call, call_id)
        if call is None or call.result_version != version:
            note_skipped()
            return  # superseded by a newer result
        destinations = enabled_destinations(session)
        if not destinations:
            record(session, call.id, STAGE, "no_destination")
            return
        body: bytes | None = None
        for dest in destinations:
            exists = session.execute(
                select(Delivery.id).where(
                    Delivery.call_id == call.id,
                    Delivery.destination_id == dest.id,
                    Delivery.result_version == version,
                )
            ).scalar()
            if exists:
                continue
            delivery = Delivery(
                id=new_webhook_id(),
                call_id=call.id,
                destination_id=dest.id,
                result_version=version,
                status=DeliveryStatus.PENDING,
                round=1,  # set now: its first event carries it
                next_attempt_at=utcnow(),
            )
            session.add(delivery)
            fallback = schedule_attempt(
                session,
                delivery,
                1,
                delay_seconds=first_attempt_fallback_seconds(),
                traceparent=trace,
            )
            if body is None:  # the same webhook body for every destination
                body = webhook_body(call, _result(session, call.id, version))
            prepared = _Prepared(body, dest.url, signing_secrets(dest), dest.enabled)
            first_attempts.append((delivery.id, fallback.id, prepared))
    for delivery_id, fallback_id, prepared in first_attempts:
        try:
            _attempt_delivery(delivery_id, 1, 1, trace, withdraw=fallback_id, prepared=prepared)
        except Exception:  # its scheduled event makes the attempt instead
            log.warning(
                "first attempt of delivery %s failed before it was recorded; "
                "its scheduled event will make it",
                delivery_id,
                exc_info=True,
            )


def schedule_attempt(
    session: Any,
    delivery: Delivery,
    attempt: int,
    *,
    delay_seconds: float = 0.0,
    traceparent: str | None = None,
) -> outbox.AddedEvent:
    """The `delivery.due` event of attempt `attempt` of the delivery's current round."""
    return outbox.add_event(
        session,
        ev.DELIVERY_DUE,
        delivery.call_id,
        {
            "call_id": str(delivery.call_id),
            "delivery_id": delivery.id,
            "attempt": attempt,
            "round": delivery.round,
        },
        delay_seconds=delay_seconds,
        traceparent=traceparent,
    )


@dataclass(frozen=True)
class _Prepared:
    """What an attempt sends, and where: read in the transaction that decided to send it."""

    body: bytes
    url: str
    secrets: list[str]
    enabled: bool


def _result(session: Any, call_id: uuid.UUID, version: int) -> Any:
    return session.execute(
        select(AiResult.result).where(AiResult.call_id == call_id, AiResult.version == version)
    ).scalar()


def webhook_body(call: Call, result: Any) -> bytes:
    payload = {"type": "call.processed", "call": webhook_call(call), "result": result}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _attempt(event: CloudEvent) -> None:
    data = ev.event_data(event)
    _attempt_delivery(
        str(data.get("delivery_id", "")),
        int(data.get("attempt", 0)),
        int(data.get("round", 1)),
        traceparent_of(event),
    )


def _attempt_delivery(
    delivery_id: str,
    attempt_no: int,
    round_no: int,
    trace: str | None,
    *,
    withdraw: uuid.UUID | None = None,
    prepared: _Prepared | None = None,
) -> None:
    """Make attempt `attempt_no` of the delivery's round `round_no`, unless it happened
    already; `withdraw`: the outbox event scheduled for this same attempt, deleted when the
    attempt is recorded (unless the relay has published it: then it arrives stale);
    `prepared`: the body and destination, read by the caller's just-committed transaction
    (the delivery was created there: no need to read it all back)."""
    if prepared is None:
        with unit_of_work() as session:
            delivery = session.get(Delivery, delivery_id)
            if (
                delivery is None
                or delivery.status != DeliveryStatus.PENDING
                or delivery.round != round_no
                or delivery.attempts != attempt_no - 1
            ):
                note_skipped()
                return  # stale or duplicate: that attempt happened already
            dest: Destination = delivery.destination
            call = session.get(Call, delivery.call_id)
            assert call is not None
            result = _result(session, delivery.call_id, delivery.result_version)
            prepared = _Prepared(
                webhook_body(call, result), dest.url, signing_secrets(dest), dest.enabled
            )
    body, url, secrets, enabled = prepared.body, prepared.url, prepared.secrets, prepared.enabled

    settings = get_settings()
    if not enabled:
        outcome = None
    else:
        headers = sign_headers(delivery_id, body, secrets)
        headers["content-type"] = "application/json"
        with new_client() as http:  # fresh per attempt (shared SSL context)
            outcome = post_webhook(
                url,
                body,
                headers,
                timeout=settings.delivery_timeout_seconds,
                policy=Policy.destination(),
                client=http,
            )
    faults.point("deliver.after_post_before_record")  # sent, not recorded: sent again

    try:
        with unit_of_work() as session:
            delivery = session.execute(
                select(Delivery).where(Delivery.id == delivery_id).with_for_update()
            ).scalar_one()
            if delivery.attempts != attempt_no - 1 or delivery.status != DeliveryStatus.PENDING:
                return
            if withdraw is not None:  # before any change: no autoflush, one UPDATE below
                outbox.withdraw_unpublished(session, withdraw)
            delivery.attempts = attempt_no
            if outcome is None:
                session.add(
                    DeliveryAttempt(
                        delivery_id=delivery_id, number=attempt_no, error="destination disabled"
                    )
                )
                delivery.last_error = "destination disabled"
                _retry_or_dead_letter(session, delivery, attempt_no, None, trace)
                metrics.delivery_attempt_done(session, delivery, None)
                return
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    number=attempt_no,
                    status_code=outcome.status_code,
                    latency_ms=round(outcome.latency_ms, 1),
                    response_excerpt=outcome.excerpt,
                    error=outcome.error,
                )
            )
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.outcome == "delivered":
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = utcnow()
                delivery.next_attempt_at = None
                _maybe_call_delivered(session, delivery, trace)
            elif outcome.outcome == "gone":
                _dead_letter(session, delivery, "destination answered 410 Gone", trace)
            else:
                _retry_or_dead_letter(session, delivery, attempt_no, outcome.retry_after, trace)
            metrics.delivery_attempt_done(session, delivery, outcome)
    except IntegrityError:
        raise  # concurrent duplicate: the trigger retries and then finds the attempt recorded


def _retry_or_dead_letter(
    session: Any, delivery: Delivery, attempt_no: int, retry_after: float | None, trace: str | None
) -> None:
    delays = get_settings().delivery_retry_delays
    if attempt_no > len(delays):
        _dead_letter(session, delivery, f"gave up after {attempt_no} attempts", trace)
        return
    delay = backoff_delay(attempt_no, delays, retry_after)
    delivery.next_attempt_at = utcnow() + _seconds(delay)
    record(
        session,
        delivery.call_id,
        STAGE,
        "delivery_retry_scheduled",
        webhook_id=delivery.id,
        attempt=attempt_no,
        status_code=delivery.last_status_code,
        retry_in_seconds=round(delay, 2),
    )
    schedule_attempt(session, delivery, attempt_no + 1, delay_seconds=delay, traceparent=trace)


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


def _dead_letter(session: Any, delivery: Delivery, why: str, trace: str | None) -> None:
    delivery.status = DeliveryStatus.DEAD
    delivery.next_attempt_at = None
    delivery.last_error = why if not delivery.last_error else f"{why}; last: {delivery.last_error}"
    call = lock_call(session, delivery.call_id)
    if call is not None and call.status != CallStatus.FAILED:
        fail_call(
            session,
            call,
            STAGE,
            "delivery_dead_lettered",
            f"{delivery.destination.name}: {why}",
            trace,
        )


def _maybe_call_delivered(session: Any, delivery: Delivery, trace: str | None) -> None:
    call = lock_call(session, delivery.call_id)
    if call is None or call.result_version != delivery.result_version:
        return
    pending = session.execute(
        select(Delivery.id).where(
            Delivery.call_id == call.id,
            Delivery.result_version == delivery.result_version,
            Delivery.status != DeliveryStatus.DELIVERED,
        )
    ).first()
    record(
        session,
        call.id,
        STAGE,
        "delivered",
        webhook_id=delivery.id,
        destination=delivery.destination.name,
        attempt=delivery.attempts,
    )
    if pending is None and call.status in (CallStatus.PROCESSED, CallStatus.FAILED):
        call.status = CallStatus.DELIVERED
        call.delivered_at = utcnow()
        metrics.stage_reached(session, "delivered", call.received_at, call.delivered_at)
        call.error_stage = call.error_reason = call.error_detail = None
