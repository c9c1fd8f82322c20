"""The recording over HTTP, with Range support so a browser's <audio> element can seek.

    GET|HEAD /api/v1/calls/<id>/audio        the bytes (200, or 206 for a Range; 416 outside)
    GET      /api/v1/calls/<id>/audio-link   a short-lived URL for that, for <audio src>

An <audio> element cannot send an Authorization header, so the UI asks for a link: the URL
carries a signed token naming the call, the user and the login session it was asked in, good
for AUDIO_LINK_SECONDS. The user is checked again (active, role, a source's own call) each time
the link is used, and so is the session: a link dies with it (logout, password change or
reset). A link asked for with an API key has no session: it lasts its hour. API clients may
call the audio path with their usual credentials instead.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import flask
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import ContentRange
from werkzeug.http import parse_range_header

from call_downloader.api import params
from call_downloader.audio.media import extension, media_type
from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, Role, User
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.security.identity import Identity, require, session_revoked, unauthorized
from call_downloader.storage.audio_range import iter_range, stored_size

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SOURCE)
AUDIO_LINK_SECONDS = 3600
_LINK_SALT = "call-downloader.audio-link.v1"
_MAX_TOKEN_LENGTH = 1000

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _serializers() -> list[URLSafeTimedSerializer]:
    secrets = get_settings().jwt_secrets
    if not secrets:
        raise ApiError(503, "not_configured", "JWT_SECRET is not set: audio links are unavailable")
    return [URLSafeTimedSerializer(s, salt=_LINK_SALT) for s in secrets]


def make_audio_token(
    call_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> str:
    data = {"c": str(call_id), "u": str(user_id)}
    if session_id is not None:
        data["s"] = str(session_id)
    return _serializers()[0].dumps(data)


def read_audio_token(
    token: str, call_id: uuid.UUID, max_age: int = AUDIO_LINK_SECONDS
) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The user id and login session in a valid, unexpired link token for `call_id`, else
    401."""
    if len(token) > _MAX_TOKEN_LENGTH:
        raise unauthorized("invalid or expired audio link")
    for serializer in _serializers():
        try:
            data = serializer.loads(token, max_age=max_age)
        except BadData:
            continue
        if not isinstance(data, dict) or data.get("c") != str(call_id):
            break
        try:
            session = uuid.UUID(str(data["s"])) if data.get("s") is not None else None
            return uuid.UUID(str(data.get("u"))), session
        except ValueError:
            break
    raise unauthorized("invalid or expired audio link")


def _identity_from_link(token: str, call_id: uuid.UUID) -> Identity:
    user_id, session_id = read_audio_token(token, call_id)
    with unit_of_work() as session:
        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in READERS:
            raise unauthorized("invalid or expired audio link")
        if session_id is not None and session_revoked(session, session_id):
            raise unauthorized("invalid or expired audio link")
        return Identity(user.id, user.username, user.role, "audio_link", session_id)


def _visible_call(session: Any, identity: Identity, call_id: uuid.UUID) -> Call:
    call = session.get(Call, call_id)
    # A source sees only its own calls; to it, others' calls do not exist.
    if call is None or (identity.role == Role.SOURCE and call.source_id != identity.user_id):
        raise ApiError(404, "not_found", "no such call")
    return call


def _download_name(call: Call) -> str:
    base = call.filename or call.external_id or str(call.id)
    base = _SAFE_NAME.sub("_", base.rsplit(".", 1)[0] if "." in base else base).strip("._")
    return f"{base or call.id}.{extension(call.format)}"


def register(router: Router) -> None:
    router.route("/api/v1/calls/<call_id>/audio-link", methods=["GET"])(audio_link)
    router.route("/api/v1/calls/<call_id>/audio", methods=["GET", "HEAD"])(audio)


def audio_link(request: flask.Request, call_id: str) -> Any:
    identity = require(request, *READERS)
    params.query(request, set())
    cid = params.path_uuid(call_id, "call")
    with unit_of_work() as session:
        _visible_call(session, identity, cid)
    token = make_audio_token(cid, identity.user_id, identity.session_id)
    expires = datetime.now(UTC) + timedelta(seconds=AUDIO_LINK_SECONDS)
    return (
        {
            "url": f"/api/v1/calls/{cid}/audio?access={quote(token)}",
            "expires_at": expires.isoformat(),
            "expires_in": AUDIO_LINK_SECONDS,
        },
        200,
        {"Cache-Control": "no-store"},
    )


def audio(request: flask.Request, call_id: str) -> Any:
    args = params.query(request, {"access", "download"})
    cid = params.path_uuid(call_id, "call")
    token = args.get("access")
    identity = _identity_from_link(token, cid) if token else require(request, *READERS)
    download = params.boolean(args, "download", False)

    with unit_of_work() as session:
        call = _visible_call(session, identity, cid)
        size = call.size_bytes
        etag = f'"{call.sha256}"' if call.sha256 else f'"{call.id}"'
        ctype = media_type(call.format)
        name = _download_name(call)
    if size is None:
        size = stored_size(cid)
    if size <= 0:
        raise ApiError(404, "no_audio", "no audio is stored for this call")

    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": ctype,
        "ETag": etag,
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": (
            f'{"attachment" if download else "inline"}; filename="{name}"; '
            f"filename*=UTF-8''{quote(name)}"
        ),
    }
    start, end, status = 0, size - 1, 200
    wanted = _requested_range(request, etag)
    if wanted is not None:
        bounds = satisfiable(wanted, size)
        if bounds is None:
            headers["Content-Range"] = f"bytes */{size}"
            headers.pop("Content-Disposition")
            body = {
                "error": {
                    "code": "range_not_satisfiable",
                    "message": f"the recording has {size} bytes",
                }
            }
            response = flask.make_response(body, 416)
            for key, value in headers.items():
                if key != "Content-Type":
                    response.headers[key] = value
            return response
        start, end, status = bounds[0], bounds[1] - 1, 206
        headers["Content-Range"] = ContentRange("bytes", start, end + 1, size).to_header()
    headers["Content-Length"] = str(end - start + 1)

    body_iter: Iterator[bytes] | list[bytes]
    body_iter = [] if request.method == "HEAD" else iter_range(cid, start, end)
    response = flask.Response(body_iter, status=status, headers=headers, direct_passthrough=True)
    response.headers["Content-Type"] = ctype  # as is: no charset added to audio
    return response


def satisfiable(wanted: tuple[int, int | None], size: int) -> tuple[int, int] | None:
    """(start, stop exclusive) of a parsed byte range over `size` bytes, or None when no byte
    of it exists (RFC 9110 14.1.2: a last position past the end is clamped; a suffix longer
    than the recording means all of it)."""
    begin, stop = wanted
    if size <= 0:
        return None
    if begin < 0:  # suffix range: the last -begin bytes
        return max(0, size + begin), size
    if begin >= size:
        return None
    return begin, size if stop is None else min(stop, size)


def _requested_range(request: flask.Request, etag: str) -> tuple[int, int | None] | None:
    """The single byte range asked for, or None to send the whole recording.

    A malformed header, another unit or several ranges are ignored (RFC 9110 lets a server
    answer those with the full representation); so is a Range whose If-Range does not match
    the current ETag (the client's copy is of something else)."""
    header = request.headers.get("Range")
    if not header or len(header) > 200:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    begin, stop = parsed.ranges[0]
    return begin, stop
