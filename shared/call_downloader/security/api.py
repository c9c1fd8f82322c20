"""The `auth` function's HTTP API, under /api/v1/auth (SPEC 3.6).

    POST   /token                 OAuth2 password form (also grant_type=refresh_token)
    POST   /refresh               rotate a refresh token
    POST   /logout                end the session (access token denylisted, refresh family revoked)
    GET    /me                    who am I (any role)
    POST   /me/password           change my own password
    GET    /users, POST /users    admin
    GET|PATCH|DELETE /users/<id>  admin
    POST   /users/<id>/password   admin: reset a password
    GET    /api-keys, POST /api-keys, DELETE /api-keys/<id>   admin
    GET    /audit                 admin, newest first, keyset-paged (limit, cursor)

Inputs are validated strictly: unknown or repeated query parameters and body fields are
refused with 4xx, so nothing a caller sends can reach the database unchecked.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import flask
from sqlalchemy import select

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import ApiKey, Role, User
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.security import api_keys, audit, login, tokens, users
from call_downloader.security.identity import (
    authenticate,
    authenticate_jwt,
    client_ip,
    ensure_admin_user,
    require,
    unauthorized,
)
from call_downloader.security.throttle import get_throttle

router = Router("auth")
PREFIX = "/api/v1/auth"
MAX_BODY_BYTES = 64 * 1024
MAX_PARAM_LENGTH = 200
MAX_LIMIT = 200
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_INT_RE = re.compile(r"^[0-9]{1,18}$")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$")
# Filters match stored values, whose alphabet is known: anything else cannot match, so it is
# refused outright (a clear 400 rather than a silent empty page).
_NAME_FILTER_RE = re.compile(r"^[a-z0-9._@-]{1,150}$")
# Targets are "<kind>" or "<kind>:<name or id>" (destination names may hold spaces).
_TARGET_FILTER_RE = re.compile(r"^[a-z_]{1,30}(:[A-Za-z0-9 ._@:/+-]{1,180})?$")

_bootstrap_lock = threading.Lock()
_bootstrapped = False


def _bootstrap_admin_once() -> None:
    """The first login of a process makes sure the bootstrap admin exists (SPEC 3.4), so the
    function works on its own even where no start-up hook runs it."""
    global _bootstrapped
    if _bootstrapped:
        return
    with _bootstrap_lock:
        if not _bootstrapped:
            ensure_admin_user()
            _bootstrapped = True


# --- input helpers -------------------------------------------------------------------------


def _body(request: flask.Request, allowed: set[str], *, form: bool = False) -> dict[str, Any]:
    """The request body as a dict (JSON object, or form fields where `form`), unknown fields
    refused."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    request.max_content_length = MAX_BODY_BYTES
    mimetype = request.mimetype
    data: dict[str, Any]
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            parsed = request.get_json(silent=True)
        except RecursionError:  # nesting deep enough to exhaust the parser
            parsed = None
        if not isinstance(parsed, dict):
            raise ApiError(400, "invalid_body", "the body must be a JSON object")
        data = parsed
    elif form and mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = request.form
        repeated = [k for k in fields if len(fields.getlist(k)) > 1]
        if repeated:
            raise ApiError(400, "invalid_body", f"repeated field: {repeated[0][:50]}")
        if request.files:
            raise ApiError(400, "invalid_body", "no files expected")
        data = fields.to_dict()
    elif not request.content_length and not request.headers.get("Transfer-Encoding"):
        data = {}
    else:
        expected = "JSON or form data" if form else "JSON"
        raise ApiError(415, "unsupported_media_type", f"send {expected}")
    unknown = sorted(str(k)[:50] for k in data if k not in allowed)
    if unknown:
        raise ApiError(422, "validation_error", f"unknown field(s): {', '.join(unknown)}")
    return data


def _string(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(422, "validation_error", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "validation_error", f"{name} must be a string")
    return value


def _query(request: flask.Request, allowed: set[str]) -> dict[str, str]:
    args = request.args
    out: dict[str, str] = {}
    for name in args:
        if name not in allowed:
            raise ApiError(400, "invalid_parameter",
                           f"unknown query parameter {name[:50]!r}; allowed: "
                           f"{', '.join(sorted(allowed)) or 'none'}")
        values = args.getlist(name)
        if len(values) > 1:
            raise ApiError(400, "invalid_parameter", f"{name} given more than once")
        value = values[0]
        if len(value) > MAX_PARAM_LENGTH or any(ch < " " for ch in value):
            raise ApiError(
                400, "invalid_parameter", f"{name} is too long or has control characters"
            )
        out[name] = value
    return out


def _int(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not _INT_RE.match(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def _bool(params: dict[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be true or false")


def _datetime(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"{name} must be an ISO 8601 date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _uuid(raw: object, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise ApiError(404, "not_found", f"no such {what}") from exc


# --- tokens --------------------------------------------------------------------------------


def _token_response(pair: tokens.TokenPair) -> Any:
    return pair.as_response(), 200, NO_STORE


def _rotate(raw: object, ip: str) -> tokens.TokenPair:
    try:
        return tokens.rotate_refresh_token(raw, client_ip=ip)
    except tokens.RefreshReuseError as exc:
        raise unauthorized(str(exc)) from exc
    except tokens.TokenError as exc:
        raise unauthorized("invalid or expired refresh token") from exc
    except tokens.NotConfiguredError as exc:
        raise ApiError(503, "not_configured", "token signing is not configured") from exc


@router.route(f"{PREFIX}/token", methods=["POST"])
def token(request: flask.Request) -> Any:
    data = _body(
        request,
        {"grant_type", "username", "password", "scope", "client_id", "client_secret",
         "refresh_token"},
        form=True,
    )
    grant = data.get("grant_type") or "password"
    ip = client_ip(request)
    if grant == "password":
        username = _string(data, "username")
        password = _string(data, "password")
        _bootstrap_admin_once()
        try:
            pair = login.login(username, password, ip)
        except tokens.NotConfiguredError as exc:
            raise ApiError(503, "not_configured", "token signing is not configured") from exc
        return _token_response(pair)
    if grant == "refresh_token":
        return _token_response(_rotate(_string(data, "refresh_token"), ip))
    raise ApiError(400, "unsupported_grant_type",
                   "grant_type must be 'password' or 'refresh_token'")


@router.route(f"{PREFIX}/refresh", methods=["POST"])
def refresh(request: flask.Request) -> Any:
    data = _body(request, {"refresh_token", "grant_type"}, form=True)
    if data.get("grant_type") not in (None, "", "refresh_token"):
        raise ApiError(400, "unsupported_grant_type", "grant_type must be 'refresh_token'")
    return _token_response(_rotate(_string(data, "refresh_token"), client_ip(request)))


@router.route(f"{PREFIX}/logout", methods=["POST"])
def logout(request: flask.Request) -> Any:
    data = _body(request, {"refresh_token"}, form=True)
    raw_refresh = _string(data, "refresh_token", required=False)
    claims = None
    actor = None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("expected 'Authorization: Bearer <token>'")
        if value.strip().startswith(api_keys.KEY_PREFIX):
            raise ApiError(400, "bad_request", "API keys are revoked, not logged out")
        identity, claims = authenticate_jwt(value.strip())
        actor = identity.username
    elif raw_refresh is None:
        raise unauthorized("send the access token or the refresh token to log out", invalid=False)
    if actor is None and raw_refresh is not None:
        with unit_of_work() as session:
            row = tokens.family_of(session, raw_refresh)
            owner = session.get(User, row.user_id) if row is not None else None
            actor = owner.username if owner is not None else None
        if actor is None:
            raise unauthorized("invalid or expired refresh token")
    login.logout(claims, raw_refresh, actor=actor, client_ip=client_ip(request))
    return "", 204


# --- me ------------------------------------------------------------------------------------


@router.route(f"{PREFIX}/me", methods=["GET"])
def me(request: flask.Request) -> Any:
    identity = authenticate(request)
    with unit_of_work() as session:
        user = session.get(User, identity.user_id)
        if user is None:  # deleted between the two reads
            raise unauthorized("invalid credentials")
        body = users.user_to_dict(user)
    body["via"] = identity.via
    return body


@router.route(f"{PREFIX}/me/password", methods=["POST"])
def change_my_password(request: flask.Request) -> Any:
    identity = authenticate(request)
    data = _body(request, {"current_password", "new_password"})
    current = _string(data, "current_password")
    new = _string(data, "new_password")
    ip = client_ip(request)
    # Guessing the current password (a stolen session) is throttled like a login.
    slot = get_throttle().reserve(identity.username, ip)
    try:
        with unit_of_work() as session:
            users.change_own_password(session, identity.user_id, current, new, client_ip=ip)
    except ApiError as exc:
        if exc.status != 403:  # not a wrong current password (a weak new one, say)
            slot.succeeded()
        raise
    slot.succeeded()
    return "", 204


# --- users ---------------------------------------------------------------------------------


@router.route(f"{PREFIX}/users", methods=["GET"])
def list_users(request: flask.Request) -> Any:
    require(request)
    params = _query(request, {"limit", "offset", "role", "active", "q", "sort"})
    limit = _int(params, "limit", 50, 1, MAX_LIMIT)
    offset = _int(params, "offset", 0, 0, 1_000_000)
    role = params.get("role") or None
    if role is not None and role not in Role.ALL:
        raise ApiError(400, "invalid_parameter", f"role must be one of: {', '.join(Role.ALL)}")
    q = params.get("q") or None
    if q is not None and not _NAME_FILTER_RE.match(q.lower()):
        raise ApiError(400, "invalid_parameter",
                       "q must be part of a username (letters, digits, . _ @ -)")
    sort = params.get("sort") or "username"
    if sort not in users.SORTS:
        raise ApiError(400, "invalid_parameter", f"sort must be one of: {', '.join(users.SORTS)}")
    with unit_of_work() as session:
        rows, total = users.list_users(
            session, role=role, active=_bool(params, "active"), q=q,
            sort=sort, limit=limit, offset=offset,
        )
        items = [users.user_to_dict(u) for u in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.route(f"{PREFIX}/users", methods=["POST"])
def create_user(request: flask.Request) -> Any:
    who = require(request)
    data = _body(request, {"username", "role", "password", "active"})
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise ApiError(422, "validation_error", "active must be true or false")
    password = data.get("password")
    if password is not None and not isinstance(password, str):
        raise ApiError(422, "validation_error", "password must be a string")
    with unit_of_work() as session:
        user = users.create_user(
            session, data.get("username"), data.get("role"), password,
            active=active, actor=who.username, client_ip=client_ip(request),
        )
        body = users.user_to_dict(user)
    return body, 201, {"Location": f"{PREFIX}/users/{body['id']}"}


@router.route(f"{PREFIX}/users/<user_id>", methods=["GET"])
def get_user(request: flask.Request, user_id: str) -> Any:
    require(request)
    _query(request, set())
    with unit_of_work() as session:
        return users.user_to_dict(users.get_user(session, user_id))


@router.route(f"{PREFIX}/users/<user_id>", methods=["PATCH"])
def update_user(request: flask.Request, user_id: str) -> Any:
    who = require(request)
    data = _body(request, {"role", "active"})
    if not data:
        raise ApiError(422, "validation_error", "nothing to change: send role and/or active")
    with unit_of_work() as session:
        user = users.update_user(
            session, user_id, role=data.get("role"), active=data.get("active"),
            actor=who.username, client_ip=client_ip(request),
        )
        return users.user_to_dict(user)


@router.route(f"{PREFIX}/users/<user_id>", methods=["DELETE"])
def delete_user(request: flask.Request, user_id: str) -> Any:
    who = require(request)
    with unit_of_work() as session:
        users.delete_user(session, user_id, actor=who.username, client_ip=client_ip(request))
    return "", 204


@router.route(f"{PREFIX}/users/<user_id>/password", methods=["POST"])
def reset_password(request: flask.Request, user_id: str) -> Any:
    who = require(request)
    data = _body(request, {"password"})
    password = _string(data, "password")
    with unit_of_work() as session:
        users.reset_password(session, user_id, password, actor=who.username,
                             client_ip=client_ip(request))
    return "", 204


# --- API keys ------------------------------------------------------------------------------


@router.route(f"{PREFIX}/api-keys", methods=["POST"])
def create_api_key(request: flask.Request) -> Any:
    who = require(request)
    data = _body(request, {"name", "user_id"})
    name = _string(data, "name", required=False) or ""
    if len(name) > api_keys.MAX_NAME_LENGTH or any(ch < " " for ch in name):
        raise ApiError(422, "validation_error",
                       f"name must be at most {api_keys.MAX_NAME_LENGTH} printable characters")
    raw_user = data.get("user_id")
    with unit_of_work() as session:
        if raw_user in (None, ""):
            owner = session.get(User, who.user_id)
        else:
            if not isinstance(raw_user, str):
                raise ApiError(422, "validation_error", "user_id must be a string")
            owner = users.get_user(session, raw_user)
            if owner.id != who.user_id and owner.role != Role.SOURCE:
                raise ApiError(422, "validation_error",
                               "API keys are for source accounts (or for yourself)")
        if owner is None:
            raise unauthorized("invalid credentials")
        if not owner.active:
            raise ApiError(422, "validation_error", "the user is inactive")
        created = api_keys.create_api_key(session, owner, name)
        audit.record(who.username, audit.API_KEY_CREATE, target=f"user:{owner.username}",
                     client_ip=client_ip(request),
                     detail={"key_id": str(created.id), "prefix": created.prefix, "name": name},
                     session=session)
    return created.as_response(), 201, {
        "Location": f"{PREFIX}/api-keys/{created.id}", **NO_STORE,
    }


@router.route(f"{PREFIX}/api-keys", methods=["GET"])
def list_api_keys(request: flask.Request) -> Any:
    require(request)
    params = _query(request, {"user_id", "include_revoked"})
    user_id = None
    if params.get("user_id"):
        try:
            user_id = uuid.UUID(params["user_id"])
        except ValueError as exc:
            raise ApiError(400, "invalid_parameter", "user_id must be a UUID") from exc
    include_revoked = _bool(params, "include_revoked")
    with unit_of_work() as session:
        rows = api_keys.list_api_keys(
            session, user_id=user_id, include_revoked=include_revoked is not False
        )
        items = [api_keys.key_to_dict(k) for k in rows]
    return {"items": items}


@router.route(f"{PREFIX}/api-keys/<key_id>", methods=["GET"])
def get_api_key(request: flask.Request, key_id: str) -> Any:
    require(request)
    with unit_of_work() as session:
        row = session.get(ApiKey, _uuid(key_id, "API key"))
        if row is None:
            raise ApiError(404, "not_found", "no such API key")
        return api_keys.key_to_dict(row)


@router.route(f"{PREFIX}/api-keys/<key_id>", methods=["DELETE"])
def revoke_api_key(request: flask.Request, key_id: str) -> Any:
    who = require(request)
    kid = _uuid(key_id, "API key")
    with unit_of_work() as session:
        already = session.scalar(select(ApiKey.revoked_at).where(ApiKey.id == kid))
        row = api_keys.revoke_api_key(session, kid)
        if row is None:
            raise ApiError(404, "not_found", "no such API key")
        if already is None:
            audit.record(who.username, audit.API_KEY_REVOKE, target=f"user:{row.user.username}",
                         client_ip=client_ip(request),
                         detail={"key_id": str(row.id), "prefix": row.prefix}, session=session)
    return "", 204


# --- audit ---------------------------------------------------------------------------------


@router.route(f"{PREFIX}/audit", methods=["GET"])
def list_audit(request: flask.Request) -> Any:
    require(request)
    params = _query(request, {"limit", "cursor", "action", "actor", "target", "since", "until"})
    limit = _int(params, "limit", 50, 1, MAX_LIMIT)
    cursor = _int(params, "cursor", 0, 1, 2**63 - 1) if params.get("cursor") else None
    action = params.get("action") or None
    if action is not None and (len(action) > 64 or not _ACTION_RE.match(action)):
        raise ApiError(400, "invalid_parameter",
                       "action must look like 'auth.login.failure' (or 'auth.' for a family)")
    actor = params.get("actor") or None
    if actor is not None and not _NAME_FILTER_RE.match(actor):
        raise ApiError(400, "invalid_parameter", "actor must be a username")
    target = params.get("target") or None
    if target is not None and not _TARGET_FILTER_RE.match(target):
        raise ApiError(400, "invalid_parameter",
                       "target must look like 'user:<username>' or 'call:<id>'")
    with unit_of_work() as session:
        rows, next_id = audit.list_entries(
            session, limit=limit, before_id=cursor, action=action,
            actor=actor, target=target,
            since=_datetime(params, "since"), until=_datetime(params, "until"),
        )
        items = [audit.entry_to_dict(r) for r in rows]
    return {"items": items, "next_cursor": str(next_id) if next_id is not None else None}
