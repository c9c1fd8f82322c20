"""Routes of the `ingest` function: recordings from sources, results from an async AI."""

from __future__ import annotations

import json

import flask

from call_downloader.ai.client import MAX_RESULT_BYTES
from call_downloader.db.models import Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline import ingest as ingest_stage
from call_downloader.pipeline.ai_callback import verify_token as verify_callback_token
from call_downloader.pipeline.call_ai import accept_callback
from call_downloader.pipeline.common import load_json
from call_downloader.security.identity import present, require_in

router = Router("ingest")


@router.route("/api/v1/calls", methods=["POST"])
def post_call(request: flask.Request) -> flask.Response:
    # The credentials are checked before the database is touched; a bearer token's user is
    # then read in the upload's own transaction.
    presented = present(request)
    return ingest_stage.ingest(
        request,
        lambda tx: require_in(tx, request, presented, Role.ADMIN, Role.OPERATOR, Role.SOURCE),
    )


@router.route("/api/v1/ai/callback", methods=["POST"])
def ai_callback(request: flask.Request) -> flask.Response:
    # Authenticated by the single-purpose token in the URL the AI was given, checked before
    # one byte of the body is read: a caller without it costs a signature check, no more.
    token = request.args.get("token", "")
    claims = verify_callback_token(token) if 0 < len(token) <= 4096 else None
    if claims is None:
        raise ApiError(401, "unauthorized", "missing or invalid callback token")
    limit = MAX_RESULT_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the result is larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "payload_too_large", f"the result is larger than {limit} bytes")
    try:
        result = load_json(raw)  # parsed once; refuses what PostgreSQL's jsonb could not keep
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "the result must be a JSON object") from None
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"the result cannot be stored: {exc}") from None
    if not isinstance(result, dict):
        raise ApiError(422, "invalid_body", "the result must be a JSON object")
    status, message = accept_callback(claims, result)
    if status != 200:
        raise ApiError(status, "conflict", message)
    return flask.make_response({"status": "ok", "message": message}, 200)
