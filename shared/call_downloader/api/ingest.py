"""Routes of the `ingest` function: recordings from sources, results from an async AI."""

from __future__ import annotations

import json

import flask

from call_downloader.db.models import Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline import ingest as ingest_stage
from call_downloader.pipeline.call_ai import accept_callback
from call_downloader.pipeline.common import load_json
from call_downloader.security.identity import present, require_in

router = Router("ingest")
MAX_CALLBACK_BYTES = 20 * 1024 * 1024


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
    # Authenticated by the single-purpose token in the URL the AI was given.
    token = request.args.get("token", "")
    if not token or len(token) > 4096:
        raise ApiError(401, "unauthorized", "missing or invalid callback token")
    if request.content_length is not None and request.content_length > MAX_CALLBACK_BYTES:
        raise ApiError(413, "payload_too_large", "the result is too large")
    raw = request.stream.read(MAX_CALLBACK_BYTES + 1)
    if len(raw) > MAX_CALLBACK_BYTES:
        raise ApiError(413, "payload_too_large", "the result is too large")
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "the result must be a JSON object") from None
    except RecursionError:
        pass  # valid syntax, refused below as too deeply nested
    try:
        result = load_json(raw)  # refuses what PostgreSQL's jsonb could not keep
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"the result cannot be stored: {exc}") from None
    if not isinstance(result, dict):
        raise ApiError(422, "invalid_body", "the result must be a JSON object")
    status, message = accept_callback(token, result)
    if status != 200:
        raise ApiError(status, "unauthorized" if status == 401 else "conflict", message)
    return flask.make_response({"status": "ok", "message": message}, 200)
