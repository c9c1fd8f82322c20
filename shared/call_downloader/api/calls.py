"""Routes of the `calls` function: the read/admin API behind the UI."""

from __future__ import annotations

import uuid

import flask

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline.views import call_json
from call_downloader.security.identity import require

router = Router("calls")
READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SOURCE)


def parse_call_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", "no such call") from None


@router.route("/api/v1/calls/<call_id>", methods=["GET"])
def get_call(request: flask.Request, call_id: str) -> dict:  # type: ignore[type-arg]
    identity = require(request, *READERS)
    cid = parse_call_id(call_id)
    with unit_of_work() as session:
        call = session.get(Call, cid)
        # A source sees only its own calls; to it, others' calls do not exist.
        if call is None or (identity.role == Role.SOURCE and call.source_id != identity.user_id):
            raise ApiError(404, "not_found", "no such call")
        return call_json(session, cid)
