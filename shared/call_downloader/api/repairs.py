"""Operator repairs over HTTP (admin and operator). Each is audited.

POST /api/v1/calls/<id>/retry              re-run a failed call from the failed stage
POST /api/v1/calls/<id>/rerun-ai           ask the AI again (new result version)
POST /api/v1/deliveries/<webhook-id>/replay  send one delivery again
"""

from __future__ import annotations

import re
from typing import Any

import flask

from call_downloader.api import params
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Delivery, Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline import repair
from call_downloader.pipeline.views import call_json
from call_downloader.security import audit
from call_downloader.security.identity import client_ip, require

REPAIRERS = (Role.ADMIN, Role.OPERATOR)
_DELIVERY_ID = re.compile(r"^msg_[A-Za-z0-9_-]{1,60}$")


def register(router: Router) -> None:
    router.route("/api/v1/calls/<call_id>/retry", methods=["POST"])(retry_call)
    router.route("/api/v1/calls/<call_id>/rerun-ai", methods=["POST"])(rerun_ai)
    router.route("/api/v1/deliveries/<delivery_id>/replay", methods=["POST"])(replay_delivery)


def _call_after(cid: Any) -> dict[str, Any]:
    with unit_of_work() as session:
        return call_json(session, cid)


def retry_call(request: flask.Request, call_id: str) -> Any:
    who = require(request, *REPAIRERS)
    params.query(request, set())
    cid = params.path_uuid(call_id, "call")
    params.json_body(request, set())
    repair.retry_call(cid, who.username)
    audit.record(who.username, "call.retry", target=f"call:{cid}", client_ip=client_ip(request))
    return _call_after(cid), 202


def rerun_ai(request: flask.Request, call_id: str) -> Any:
    who = require(request, *REPAIRERS)
    params.query(request, set())
    cid = params.path_uuid(call_id, "call")
    params.json_body(request, set())
    repair.rerun_ai(cid, who.username)
    audit.record(who.username, "call.rerun_ai", target=f"call:{cid}", client_ip=client_ip(request))
    return _call_after(cid), 202


def replay_delivery(request: flask.Request, delivery_id: str) -> Any:
    who = require(request, *REPAIRERS)
    params.query(request, set())
    if not _DELIVERY_ID.match(delivery_id):
        raise ApiError(404, "not_found", "no such delivery")
    params.json_body(request, set())
    repair.replay_delivery(delivery_id, who.username)
    with unit_of_work() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None  # replay_delivery raised 404 otherwise
        cid = delivery.call_id
    audit.record(
        who.username,
        "delivery.replay",
        target=f"call:{cid}",
        client_ip=client_ip(request),
        detail={"webhook_id": delivery_id},
    )
    return {"replayed": delivery_id, "call": _call_after(cid)}, 202
