"""How a call looks from outside: the webhook's `call` object and the API's call JSON."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from call_downloader.db.models import (
    AiResult,
    Call,
    Delivery,
    DeliveryAttempt,
    TimelineEntry,
)
from call_downloader.http.errors import ApiError


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def webhook_call(call: Call) -> dict[str, Any]:
    """The `call` object of the webhook payload (SPEC 3.3)."""
    return {
        "id": str(call.id),
        "external_id": call.external_id,
        "duration_seconds": call.duration_seconds,
        "format": call.format,
        "size_bytes": call.size_bytes,
        "sha256": call.sha256,
        "received_at": iso(call.received_at),
        "metadata": call.metadata_ or {},
    }


def latest_result(session: Session, call: Call) -> AiResult | None:
    if call.result_version is None:
        return None
    return session.execute(
        select(AiResult).where(AiResult.call_id == call.id, AiResult.version == call.result_version)
    ).scalar_one_or_none()


def _summary(call: Any) -> dict[str, Any]:
    """The call's own fields (`call`: a `Call`, or anything with its attribute names)."""
    body = webhook_call(call)
    body.update(
        {
            "status": call.status,
            "source_id": str(call.source_id),
            "origin": call.origin,
            "filename": call.filename,
            "codec": call.codec,
            "sample_rate": call.sample_rate,
            "channels": call.channels,
            "bitrate": call.bitrate,
            "analyzed_at": iso(call.analyzed_at),
            "processed_at": iso(call.processed_at),
            "delivered_at": iso(call.delivered_at),
            "updated_at": iso(call.updated_at),
            "error": (
                {
                    "stage": call.error_stage,
                    "reason": call.error_reason,
                    "message": call.error_detail,
                }
                if call.error_reason
                else None
            ),
            "result_version": call.result_version,
        }
    )
    return body


def _timeline_item(at: datetime | None, stage: str, event: str, detail: Any) -> dict[str, Any]:
    return {"at": iso(at), "stage": stage, "event": event, "detail": detail}


# `Call`'s attribute of each column of `calls`: the same name, but for `metadata`, which the
# declarative base reserves.
_ATTRIBUTE_OF_COLUMN = {
    column.name: "metadata_" if column.name == "metadata" else column.name
    for column in Call.__table__.columns
}
_NO_VALUES = dict.fromkeys(_ATTRIBUTE_OF_COLUMN.values())


def created_call_json(values: dict[str, Any], timeline: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`call_json` of a call inserted in this transaction, built from what was written
    instead of read back: `values` are the row's columns by column name (every column the
    answer shows that has a value; the others show as null), `timeline` its entries (`at`,
    `stage`, `event`, `detail`). Such a call has no result, deliveries or attempts yet."""
    fields = dict(_NO_VALUES)
    for name, value in values.items():
        fields[_ATTRIBUTE_OF_COLUMN[name]] = value
    body = _summary(SimpleNamespace(**fields))
    body["result"] = None
    body["deliveries"] = []
    body["attempts"] = []
    body["timeline"] = [
        _timeline_item(t["at"], t["stage"], t["event"], t["detail"]) for t in timeline
    ]
    return body


def call_json(
    session: Session, call_id: uuid.UUID, *, detail: bool = True, created: bool = False
) -> dict[str, Any]:
    """`created`: the call was created in this transaction, so it has no result, deliveries or
    attempts yet (two queries fewer)."""
    call = session.get(Call, call_id)
    if call is None:
        raise ApiError(404, "not_found", "no such call")
    body = _summary(call)
    if not detail:
        return body
    result = latest_result(session, call)
    body["result"] = result.result if result is not None else None
    deliveries: Sequence[Delivery] = ()
    attempts: Sequence[DeliveryAttempt] = ()
    if not created:
        deliveries = (
            session.execute(
                select(Delivery).where(Delivery.call_id == call.id).order_by(Delivery.created_at)
            )
            .scalars()
            .all()
        )
        attempts = (
            session.execute(
                select(DeliveryAttempt)
                .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                .where(Delivery.call_id == call.id)
                .order_by(DeliveryAttempt.attempted_at, DeliveryAttempt.id)
            )
            .scalars()
            .all()
        )
    names = {d.id: d.destination.name for d in deliveries}
    body["deliveries"] = [
        {
            "webhook_id": d.id,
            "destination_id": str(d.destination_id),
            "destination": d.destination.name,
            "result_version": d.result_version,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": iso(d.next_attempt_at),
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "delivered_at": iso(d.delivered_at),
        }
        for d in deliveries
    ]
    body["attempts"] = [
        {
            "webhook_id": a.delivery_id,
            "destination": names.get(a.delivery_id),
            "number": a.number,
            "at": iso(a.attempted_at),
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "response_excerpt": a.response_excerpt,
            "error": a.error,
        }
        for a in attempts
    ]
    timeline = (
        session.execute(
            select(TimelineEntry)
            .where(TimelineEntry.call_id == call.id)
            .order_by(TimelineEntry.at, TimelineEntry.id)
        )
        .scalars()
        .all()
    )
    body["timeline"] = [_timeline_item(t.at, t.stage, t.event, t.detail) for t in timeline]
    return body


# The stages about the source's own recording: their failure texts tell it what was wrong with
# what it sent. The others' (the AI, the deliveries) may name internal systems.
SOURCE_STAGES = frozenset({"ingest", "analyze-duration"})


def for_source(body: dict[str, Any]) -> dict[str, Any]:
    """A call's JSON (`call_json`, detailed or not) as its `source` account sees it: its
    recording, result and progress, without delivery internals (destinations, their answers
    and errors) or the texts of the AI's failures."""
    error = body.get("error")
    if error and error.get("stage") not in SOURCE_STAGES:
        body["error"] = {**error, "message": None}
    if "deliveries" in body:
        shown = ("webhook_id", "status", "delivered_at")
        body["deliveries"] = [{k: d[k] for k in shown} for d in body["deliveries"]]
        body["attempts"] = []
    if "timeline" in body:
        body["timeline"] = [
            t if t["stage"] in SOURCE_STAGES else {**t, "detail": None} for t in body["timeline"]
        ]
    return body
