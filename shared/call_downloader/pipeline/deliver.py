"""deliver: post the AI result to each destination as a Standard Webhooks request (SPEC 3.3).

Each (call, destination, result version) is one delivery whose id is the `webhook-id`,
stable across retries. Attempts follow DELIVERY_RETRY_DELAYS (scheduled outbox events), honour
Retry-After, stop at 410 Gone, never follow redirects, and end dead-lettered after the last one.

The hot path runs Core statements on a `db.engine.transaction()`: no ORM session or objects.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from cloudevents.http import CloudEvent
from sqlalchemy import and_, bindparam, exists, select, update

from call_downloader.config import get_settings
from call_downloader.db.engine import transaction
from call_downloader.db.models import (
    AiResult,
    CallStatus,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    utcnow,
)
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.net.backoff import backoff_delay
from call_downloader.net.transport import new_client
from call_downloader.net.webhooks import AttemptOutcome, post_webhook, sign_headers
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped, observe_event
from call_downloader.pipeline.common import (
    CALLS,
    add_timeline,
    call_id_of,
    claim_event,
    fail_call_row,
    insert_statement,
    lock_call_row,
    traceparent_of,
)
from call_downloader.pipeline.destinations import (
    DESTINATIONS,
    destination_policy,
    signing_secrets,
)
from call_downloader.pipeline.views import webhook_call
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "deliver"
STAGE = "deliver"

DELIVERIES = Delivery.__table__
ATTEMPTS = DeliveryAttempt.__table__
AI_RESULTS = AiResult.__table__

# The call's columns the webhook shows, named as `views.webhook_call` reads them off a `Call`.
WEBHOOK_CALL_COLUMNS = (
    CALLS.c.id,
    CALLS.c.external_id,
    CALLS.c.duration_seconds,
    CALLS.c.format,
    CALLS.c.size_bytes,
    CALLS.c.sha256,
    CALLS.c.received_at,
    CALLS.c.metadata.label("metadata_"),
)
# What an attempt needs of a destination (`signing_secrets` reads the secret columns).
DESTINATION_COLUMNS = (
    DESTINATIONS.c.id.label("destination_id"),
    DESTINATIONS.c.name.label("destination_name"),
    DESTINATIONS.c.url,
    DESTINATIONS.c.enabled,
    DESTINATIONS.c.secret,
    DESTINATIONS.c.previous_secret,
    DESTINATIONS.c.previous_secret_expires_at,
    DESTINATIONS.c.from_config,
)


# Statements are built once, on first use, and executed with parameters (see `common`): building
# a statement and its cache key per execution cost as much CPU as running it.
@cache
def _fan_out_query() -> Any:
    """The call and its result (repeated on each row), one row per enabled destination (none:
    a single row without one) with its delivery of this version if there is one already.
    Parameters: call_id, version."""
    return (
        select(
            *WEBHOOK_CALL_COLUMNS,
            CALLS.c.result_version,
            AI_RESULTS.c.result,
            *DESTINATION_COLUMNS,
            DELIVERIES.c.id.label("delivery_id"),
        )
        .select_from(
            CALLS.outerjoin(
                AI_RESULTS,
                and_(
                    AI_RESULTS.c.call_id == CALLS.c.id, AI_RESULTS.c.version == bindparam("version")
                ),
            )
            .outerjoin(DESTINATIONS, DESTINATIONS.c.enabled.is_(True))
            .outerjoin(
                DELIVERIES,
                and_(
                    DELIVERIES.c.call_id == CALLS.c.id,
                    DELIVERIES.c.destination_id == DESTINATIONS.c.id,
                    DELIVERIES.c.result_version == bindparam("version"),
                ),
            )
        )
        .where(CALLS.c.id == bindparam("call_id"))
    )


@cache
def _attempt_query() -> Any:
    """A delivery with its destination, call and result. Parameter: delivery_id."""
    return (
        select(
            DELIVERIES.c.status.label("delivery_status"),
            DELIVERIES.c.round,
            DELIVERIES.c.attempts,
            *WEBHOOK_CALL_COLUMNS,
            AI_RESULTS.c.result,
            *DESTINATION_COLUMNS,
        )
        .select_from(
            DELIVERIES.join(DESTINATIONS, DESTINATIONS.c.id == DELIVERIES.c.destination_id)
            .join(CALLS, CALLS.c.id == DELIVERIES.c.call_id)
            .outerjoin(
                AI_RESULTS,
                and_(
                    AI_RESULTS.c.call_id == DELIVERIES.c.call_id,
                    AI_RESULTS.c.version == DELIVERIES.c.result_version,
                ),
            )
        )
        .where(DELIVERIES.c.id == bindparam("delivery_id"))
    )


@cache
def _record_attempt_statement() -> Any:
    """The delivery's attempt recorded if it is still the one expected (pending, `attempts_done`
    attempts made); the SET clause is the parameters' other keys (bindparam names must not be
    column names). Parameters: delivery_id_, attempts_done, and the changes."""
    return (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id == bindparam("delivery_id_"),
            DELIVERIES.c.attempts == bindparam("attempts_done"),
            DELIVERIES.c.status == DeliveryStatus.PENDING,
        )
        .returning(
            DELIVERIES.c.call_id,
            DELIVERIES.c.result_version,
            DELIVERIES.c.round,
            DELIVERIES.c.last_status_code,
        )
    )


@cache
def _call_delivered_statement() -> Any:
    """The call marked delivered unless one of its deliveries of this result version is not
    delivered; the SET clause is the parameters' other keys.
    Parameters: call_id_, result_version_, and the call's new values."""
    return update(CALLS).where(
        CALLS.c.id == bindparam("call_id_"),
        ~exists().where(
            DELIVERIES.c.call_id == bindparam("call_id_"),
            DELIVERIES.c.result_version == bindparam("result_version_"),
            DELIVERIES.c.status != DeliveryStatus.DELIVERED,
        ),
    )


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


@dataclass(frozen=True)
class _Prepared:
    """What an attempt sends, and where: read in the transaction that decided to send it."""

    body: bytes
    url: str
    secrets: list[str]
    enabled: bool
    destination: str  # its name: metrics, log lines, timeline
    from_config: bool  # DELIVERY_URL's: trusted with internal addresses


def _prepared(row: Any) -> _Prepared:
    """From a row with the WEBHOOK_CALL_COLUMNS, DESTINATION_COLUMNS and the AI `result`."""
    return _Prepared(
        webhook_body(row, row.result),
        row.url,
        signing_secrets(row),
        row.enabled,
        row.destination_name,
        row.from_config,
    )


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
    with transaction() as tx:
        if not claim_event(tx, CONSUMER, event_id):
            return
        # One look for everything: the call, its result, the enabled destinations and their
        # deliveries of this version.
        found = tx.execute(_fan_out_query(), {"call_id": call_id, "version": version}).all()
        if not found or found[0].result_version != version:
            note_skipped()
            return  # superseded by a newer result
        if found[0].destination_id is None:
            add_timeline(tx, call_id, STAGE, "no_destination")
            return
        new = [row for row in found if row.delivery_id is None]
        if not new:
            return
        now = utcnow()
        deliveries = [
            {
                "id": new_webhook_id(),
                "call_id": call_id,
                "destination_id": row.destination_id,
                "result_version": version,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "round": 1,  # set now: its first event carries it
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for row in new
        ]
        tx.execute(insert_statement(DELIVERIES), deliveries)  # executemany: batched by psycopg
        body = webhook_body(new[0], new[0].result)  # the same webhook body for every destination
        for delivery, row in zip(deliveries, new, strict=True):
            fallback = _schedule(
                tx,
                call_id,
                delivery["id"],
                1,
                1,
                delay_seconds=first_attempt_fallback_seconds(),
                traceparent=trace,
            )
            prepared = _Prepared(
                body,
                row.url,
                signing_secrets(row),
                row.enabled,
                row.destination_name,
                row.from_config,
            )
            first_attempts.append((delivery["id"], fallback.id, prepared))
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


def _schedule(
    executor: Any,
    call_id: uuid.UUID,
    delivery_id: str,
    round_no: int,
    attempt: int,
    *,
    delay_seconds: float = 0.0,
    traceparent: str | None = None,
) -> outbox.AddedEvent:
    """The `delivery.due` event of attempt `attempt` of round `round_no` of a delivery."""
    return outbox.add_event(
        executor,
        ev.DELIVERY_DUE,
        call_id,
        {
            "call_id": str(call_id),
            "delivery_id": delivery_id,
            "attempt": attempt,
            "round": round_no,
        },
        delay_seconds=delay_seconds,
        traceparent=traceparent,
    )


def schedule_attempt(
    session: Any,
    delivery: Any,
    attempt: int,
    *,
    delay_seconds: float = 0.0,
    traceparent: str | None = None,
) -> outbox.AddedEvent:
    """The `delivery.due` event of attempt `attempt` of the delivery's current round
    (`delivery`: anything with `id`, `call_id` and `round`, e.g. an ORM `Delivery`)."""
    return _schedule(
        session,
        delivery.call_id,
        delivery.id,
        delivery.round,
        attempt,
        delay_seconds=delay_seconds,
        traceparent=traceparent,
    )


def webhook_body(call: Any, result: Any) -> bytes:
    """`call`: a `Call`, or a row with WEBHOOK_CALL_COLUMNS."""
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


def _read_attempt(delivery_id: str, attempt_no: int, round_no: int) -> _Prepared | None:
    """What attempt `attempt_no` of round `round_no` sends, or None when that attempt is stale
    or a duplicate (it happened already). One statement: delivery, destination, call, result."""
    with transaction() as tx:
        row = tx.execute(_attempt_query(), {"delivery_id": delivery_id}).first()
    if (
        row is None
        or row.delivery_status != DeliveryStatus.PENDING
        or row.round != round_no
        or row.attempts != attempt_no - 1
    ):
        return None
    return _prepared(row)


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
        prepared = _read_attempt(delivery_id, attempt_no, round_no)
        if prepared is None:
            note_skipped()
            return  # stale or duplicate: that attempt happened already

    outcome: AttemptOutcome | None
    if not prepared.enabled:
        outcome = None
    else:
        headers = sign_headers(delivery_id, prepared.body, prepared.secrets)
        headers["content-type"] = "application/json"
        with new_client() as http:  # fresh per attempt (shared SSL context)
            outcome = post_webhook(
                prepared.url,
                prepared.body,
                headers,
                timeout=get_settings().delivery_timeout_seconds,
                policy=destination_policy(prepared.from_config),
                client=http,
            )
    faults.point("deliver.after_post_before_record")  # sent, not recorded: sent again
    _record_attempt(delivery_id, attempt_no, outcome, prepared.destination, trace, withdraw)


@dataclass(frozen=True)
class _Named:
    name: str


@dataclass(frozen=True)
class _RecordedDelivery:
    """The delivery after an attempt, as `metrics.delivery_attempt_done` reads it."""

    id: str
    status: str
    attempts: int
    destination: _Named


def _record_attempt(
    delivery_id: str,
    attempt_no: int,
    outcome: AttemptOutcome | None,
    destination: str,
    trace: str | None,
    withdraw: uuid.UUID | None,
) -> None:
    """Record attempt `attempt_no` (`outcome` None: the destination is disabled) and what
    follows from it: delivered (and maybe the call), a retry scheduled, or a dead letter."""
    now = utcnow()
    if outcome is None:
        error: str | None = "destination disabled"
        changes: dict[str, Any] = {"attempts": attempt_no, "last_error": error}
        attempt_row: dict[str, Any] = {"error": error}
        result, retry_after = "retry", None
    else:
        error = outcome.error
        changes = {
            "attempts": attempt_no,
            "last_status_code": outcome.status_code,
            "last_error": error,
        }
        attempt_row = {
            "status_code": outcome.status_code,
            "latency_ms": round(outcome.latency_ms, 1),
            "response_excerpt": outcome.excerpt,
            "error": error,
        }
        result, retry_after = outcome.outcome, outcome.retry_after

    delays = get_settings().delivery_retry_delays
    dead_why: str | None = None
    delay = 0.0
    if result == "delivered":
        changes.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif result == "gone":
        dead_why = "destination answered 410 Gone"
    elif attempt_no > len(delays):
        dead_why = f"gave up after {attempt_no} attempts"
    else:
        delay = backoff_delay(attempt_no, delays, retry_after)
        changes["next_attempt_at"] = now + timedelta(seconds=delay)
    if dead_why is not None:
        changes.update(
            status=DeliveryStatus.DEAD,
            next_attempt_at=None,
            last_error=f"{dead_why}; last: {error}" if error else dead_why,
        )

    with transaction() as tx:
        # The check and the change in one statement: a concurrent duplicate of this attempt
        # waits for the row, then finds it changed and records nothing.
        delivery = tx.execute(
            _record_attempt_statement(),
            {"delivery_id_": delivery_id, "attempts_done": attempt_no - 1, **changes},
        ).first()
        if delivery is None:
            return
        if withdraw is not None:
            outbox.withdraw_unpublished(tx, withdraw)
        tx.execute(
            insert_statement(ATTEMPTS),
            {"delivery_id": delivery_id, "number": attempt_no, **attempt_row},
        )
        if result == "delivered":
            _maybe_call_delivered(tx, delivery, delivery_id, destination, attempt_no)
        elif dead_why is not None:
            call = lock_call_row(tx, delivery.call_id, CALLS.c.status)
            if call is not None and call.status != CallStatus.FAILED:
                fail_call_row(
                    tx,
                    delivery.call_id,
                    STAGE,
                    "delivery_dead_lettered",
                    f"{destination}: {dead_why}",
                )
        else:
            add_timeline(
                tx,
                delivery.call_id,
                STAGE,
                "delivery_retry_scheduled",
                webhook_id=delivery_id,
                attempt=attempt_no,
                status_code=delivery.last_status_code,
                retry_in_seconds=round(delay, 2),
            )
            _schedule(
                tx,
                delivery.call_id,
                delivery_id,
                delivery.round,
                attempt_no + 1,
                delay_seconds=delay,
                traceparent=trace,
            )
        recorded = _RecordedDelivery(
            delivery_id,
            changes.get("status", DeliveryStatus.PENDING),
            attempt_no,
            _Named(destination),
        )
        metrics.delivery_attempt_done(tx, recorded, outcome)


def _maybe_call_delivered(
    tx: Any, delivery: Any, delivery_id: str, destination: str, attempt_no: int
) -> None:
    """The delivery is delivered: note it, and mark the call delivered once all its deliveries
    of this result version are."""
    call = lock_call_row(
        tx, delivery.call_id, CALLS.c.status, CALLS.c.result_version, CALLS.c.received_at
    )
    if call is None or call.result_version != delivery.result_version:
        return
    add_timeline(
        tx,
        delivery.call_id,
        STAGE,
        "delivered",
        webhook_id=delivery_id,
        destination=destination,
        attempt=attempt_no,
    )
    if call.status not in (CallStatus.PROCESSED, CallStatus.FAILED):
        return
    # Checked after the call's lock, in a statement of its own: a concurrent attempt on another
    # of its deliveries that committed meanwhile is seen (READ COMMITTED: a snapshot per
    # statement).
    delivered_at = utcnow()
    marked = tx.execute(
        _call_delivered_statement(),
        {
            "call_id_": delivery.call_id,
            "result_version_": delivery.result_version,
            "status": CallStatus.DELIVERED,
            "delivered_at": delivered_at,
            "error_stage": None,
            "error_reason": None,
            "error_detail": None,
        },
    ).rowcount
    if marked:
        metrics.stage_reached(tx, "delivered", call.received_at, delivered_at)
