"""Dead-lettered deliveries: the list (staff) and the bulk replay (admin, operator).

    GET  /api/v1/dead-letters          newest first; since, until, destination_id, cursor, limit
    POST /api/v1/dead-letters/replay   {since?, until?, destination_id?, limit?} -> {replayed}

The time window is on when the delivery died (its last update), the same as the replay's.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import flask
from sqlalchemy import func, select, tuple_

from call_downloader.api import params
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, Delivery, DeliveryStatus, Destination, Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline import repair
from call_downloader.security import audit
from call_downloader.security.identity import client_ip, require

STAFF = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
REPAIRERS = (Role.ADMIN, Role.OPERATOR)
MAX_REPLAY = 1000


def register(router: Router) -> None:
    router.route("/api/v1/dead-letters", methods=["GET"])(list_dead_letters)
    router.route("/api/v1/dead-letters/replay", methods=["POST"])(replay_dead_letters)


def _cursor(raw: str) -> tuple[Any, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        when, did = data
        if not isinstance(when, str) or not isinstance(did, str) or len(did) > 64:
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise params.bad("cursor", "is not a cursor of this list") from None
    return params.parse_datetime(when, "cursor"), did


def list_dead_letters(request: flask.Request) -> Any:
    require(request, *STAFF)
    args = params.query(request, {"since", "until", "destination_id", "cursor", "limit"})
    limit = params.integer(args, "limit", 50, 1, 200)
    since, until = params.date_time(args, "since"), params.date_time(args, "until")
    dest_id = params.uuid_param(args, "destination_id")
    clauses = [Delivery.status == DeliveryStatus.DEAD]
    if since:
        clauses.append(Delivery.updated_at >= since)
    if until:
        clauses.append(Delivery.updated_at <= until)
    if dest_id:
        clauses.append(Delivery.destination_id == dest_id)
    with unit_of_work() as session:
        total = session.scalar(select(func.count()).select_from(Delivery).where(*clauses))
        query = (
            select(Delivery, Call.external_id, Call.status, Destination.name)
            .join(Call, Call.id == Delivery.call_id)
            .join(Destination, Destination.id == Delivery.destination_id)
            .where(*clauses)
        )
        if args.get("cursor"):
            when, did = _cursor(args["cursor"])
            query = query.where(tuple_(Delivery.updated_at, Delivery.id) < tuple_(when, did))
        rows = session.execute(
            query.order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(limit + 1)
        ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "webhook_id": d.id,
                "call_id": str(d.call_id),
                "external_id": external_id,
                "call_status": call_status,
                "destination_id": str(d.destination_id),
                "destination": name,
                "result_version": d.result_version,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "dead_at": d.updated_at.isoformat() if d.updated_at else None,
            }
            for d, external_id, call_status, name in rows
        ]
        next_cursor = None
        if more and rows:
            last = rows[-1][0]
            raw = json.dumps([last.updated_at.isoformat(), last.id]).encode()
            next_cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {"items": items, "total": total, "next_cursor": next_cursor}


def replay_dead_letters(request: flask.Request) -> Any:
    who = require(request, *REPAIRERS)
    params.query(request, set())
    data = params.json_body(request, {"since", "until", "destination_id", "limit"})
    since, until = params.body_datetime(data, "since"), params.body_datetime(data, "until")
    if since and until and since > until:
        raise ApiError(422, "validation_error", "since is after until")
    dest_id = params.body_uuid(data, "destination_id")
    limit = params.body_int(data, "limit", 1, MAX_REPLAY) or MAX_REPLAY
    if dest_id is not None:
        with unit_of_work() as session:
            if session.get(Destination, dest_id) is None:
                raise ApiError(404, "not_found", "no such destination")
    count = repair.replay_dead_letters(
        who.username, since=since, until=until, destination_id=dest_id, limit=limit
    )
    audit.record(
        who.username,
        "dead_letters.replay",
        target=f"destination:{dest_id}" if dest_id else "dead_letters",
        client_ip=client_ip(request),
        detail={
            "replayed": count,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": limit,
        },
    )
    return {"replayed": count}, 202
