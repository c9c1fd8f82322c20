"""Operator repairs: re-run a failed call from the stage where it failed, re-run the AI on a
call (a new result version; the old one is kept), replay one delivery or many dead ones.

Each repair is one transaction: the state change and the event that restarts the work.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, CallStatus, Delivery, DeliveryStatus, utcnow
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.http.errors import ApiError
from call_downloader.pipeline.call_ai import call_trace
from call_downloader.pipeline.common import lock_call, record
from call_downloader.pipeline.deliver import schedule_attempt

STAGE = "repair"


def _locked_call(session: Session, call_id: uuid.UUID) -> Call:
    call = lock_call(session, call_id)
    if call is None:
        raise ApiError(404, "not_found", "no such call")
    return call


def _clear_error(call: Call) -> None:
    call.error_stage = call.error_reason = call.error_detail = None


def _replay(session: Session, delivery: Delivery, actor: str) -> None:
    delivery.round += 1
    delivery.attempts = 0
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = utcnow()
    delivery.delivered_at = None
    record(
        session,
        delivery.call_id,
        STAGE,
        "delivery_replayed",
        webhook_id=delivery.id,
        round=delivery.round,
        by=actor,
    )
    call = session.get(Call, delivery.call_id)
    trace = call_trace(session, call) if call is not None else None
    schedule_attempt(session, delivery, 1, traceparent=trace)
    if (
        call is not None
        and call.status in (CallStatus.FAILED, CallStatus.DELIVERED)
        and (call.result_version == delivery.result_version)
    ):
        call.status = CallStatus.PROCESSED
        _clear_error(call)


def retry_call(call_id: uuid.UUID, actor: str) -> None:
    """Re-run a failed call from the stage where it failed."""
    with unit_of_work() as session:
        call = _locked_call(session, call_id)
        if call.status != CallStatus.FAILED:
            raise ApiError(409, "not_failed", "only a failed call can be retried")
        stage, trace = call.error_stage, call_trace(session, call)
        if stage == "analyze-duration":
            call.status = CallStatus.RECEIVED
            _clear_error(call)
            record(session, call.id, STAGE, "retry", from_stage=stage, by=actor)
            outbox.add_event(
                session,
                ev.CALL_RECEIVED,
                call.id,
                {"call_id": str(call.id), "format": call.format, "size_bytes": call.size_bytes},
                traceparent=trace,
            )
        elif stage == "call-ai":
            _restart_ai(session, call, actor, new_run=False, trace=trace)
        elif stage == "deliver":
            dead = (
                session.execute(
                    select(Delivery).where(
                        Delivery.call_id == call.id,
                        Delivery.result_version == call.result_version,
                        Delivery.status == DeliveryStatus.DEAD,
                    )
                )
                .scalars()
                .all()
            )
            if not dead:
                raise ApiError(409, "nothing_to_retry", "no dead-lettered delivery to replay")
            record(session, call.id, STAGE, "retry", from_stage=stage, by=actor)
            for delivery in dead:
                _replay(session, delivery, actor)
        else:
            raise ApiError(409, "not_retryable", f"cannot retry from stage {stage!r}")


def _restart_ai(
    session: Session, call: Call, actor: str, *, new_run: bool, trace: str | None
) -> None:
    if new_run:
        call.ai_run += 1
    call.ai_attempts = 0
    call.ai_callback_jti = None
    call.status = CallStatus.ANALYZED
    _clear_error(call)
    record(
        session,
        call.id,
        STAGE,
        "rerun_ai" if new_run else "retry",
        from_stage="call-ai",
        run=call.ai_run,
        by=actor,
    )
    outbox.add_event(
        session,
        ev.CALL_ANALYZED,
        call.id,
        {"call_id": str(call.id), "run": call.ai_run, "duration_seconds": call.duration_seconds},
        traceparent=trace,
    )


def rerun_ai(call_id: uuid.UUID, actor: str) -> None:
    """Ask the AI again (a new result version; earlier versions are kept)."""
    with unit_of_work() as session:
        call = _locked_call(session, call_id)
        if call.analyzed_at is None or call.duration_seconds is None:
            raise ApiError(409, "not_analyzed", "the recording has not been analysed yet")
        if call.status in (CallStatus.ANALYZED, CallStatus.PROCESSING):
            raise ApiError(409, "ai_in_progress", "the AI is already working on this call")
        _restart_ai(session, call, actor, new_run=True, trace=call_trace(session, call))


def replay_delivery(delivery_id: str, actor: str) -> None:
    with unit_of_work() as session:
        delivery = session.execute(
            select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        ).scalar_one_or_none()
        if delivery is None:
            raise ApiError(404, "not_found", "no such delivery")
        if delivery.status == DeliveryStatus.PENDING:
            raise ApiError(409, "delivery_pending", "this delivery is still being attempted")
        _replay(session, delivery, actor)


def replay_dead_letters(
    actor: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    destination_id: uuid.UUID | None = None,
    limit: int = 1000,
) -> int:
    """Replay dead-lettered deliveries (by when they died and by destination)."""
    with unit_of_work() as session:
        query = select(Delivery).where(Delivery.status == DeliveryStatus.DEAD)
        if since is not None:
            query = query.where(Delivery.updated_at >= since)
        if until is not None:
            query = query.where(Delivery.updated_at <= until)
        if destination_id is not None:
            query = query.where(Delivery.destination_id == destination_id)
        rows = (
            session.execute(
                query.order_by(Delivery.updated_at).limit(limit).with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for delivery in rows:
            _replay(session, delivery, actor)
        return len(rows)
