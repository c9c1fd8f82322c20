"""Who is calling: the interface every HTTP function uses.

    who = authenticate(request)                         # any valid identity, else 401
    who = require(request, Role.OPERATOR, Role.VIEWER)  # admin always passes; others 403

Credentials: `Authorization: Bearer <access JWT>` or `X-API-Key: <key>` (an API key is also
accepted as a bearer token, for clients that only know bearer auth). The user is read from the
database on every request, so deactivation, deletion and role changes take effect at once;
the role used is the user's current one, not the one written in the token.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import flask
from sqlalchemy import bindparam, exists, select, text

from call_downloader.config import get_settings
from call_downloader.db.engine import transaction, unit_of_work
from call_downloader.db.models import RefreshToken, Role, User
from call_downloader.http.errors import ApiError
from call_downloader.security import api_keys, tokens

log = logging.getLogger(__name__)

_CACHE_KEY = "call_downloader.identity"
# Arbitrary constant: the PostgreSQL advisory lock serialising the first-admin bootstrap.
_ADMIN_LOCK = 0x63646C61646D
REALM = 'Bearer realm="call-downloader"'
_USERS = User.__table__
_REFRESH_TOKENS = RefreshToken.__table__


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID
    username: str
    role: str
    via: str  # "jwt" | "api_key" | "audio_link"
    session_id: uuid.UUID | None = None  # the login session of a JWT (ended by logout)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def has_role(self, *roles: str) -> bool:
        return self.role == Role.ADMIN or self.role in roles


def unauthorized(message: str = "authentication required", *, invalid: bool = True) -> ApiError:
    challenge = REALM + (', error="invalid_token"' if invalid else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _bearer(request: flask.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        raise unauthorized("expected 'Authorization: Bearer <token>'")
    return value


def verify_access_token(token: str) -> tokens.AccessClaims:
    """Everything about an access token that needs no database: signature, claims and the
    denylist; 401 ApiError on anything wrong."""
    try:
        claims = tokens.decode_access_token(token)
    except tokens.NotConfiguredError as exc:
        log.error("JWT_SECRET is not set: bearer tokens cannot be verified")
        raise unauthorized("invalid or expired token") from exc
    except tokens.TokenError as exc:
        raise unauthorized("invalid or expired token") from exc
    if tokens.is_denied(claims.jti):
        raise unauthorized("token has been revoked")
    return claims


# The token's user, and whether its session was revoked (logout, refresh reuse, password reset,
# deactivation): one statement, built once (its cache key is then computed once, too).
_USER_OF_TOKEN = select(
    _USERS.c.id,
    _USERS.c.username,
    _USERS.c.role,
    _USERS.c.active,
    exists()
    .where(
        _REFRESH_TOKENS.c.family_id == bindparam("session_id"),
        _REFRESH_TOKENS.c.revoked_at.is_not(None),
    )
    .label("revoked"),
).where(_USERS.c.id == bindparam("user_id"))


def session_revoked(executor: Any, session_id: uuid.UUID) -> bool:
    """Was this login session ended (logout, password change or reset, deactivation)?"""
    return bool(executor.execute(_SESSION_REVOKED, {"session_id": session_id}).scalar())


_SESSION_REVOKED = select(
    exists().where(
        _REFRESH_TOKENS.c.family_id == bindparam("session_id"),
        _REFRESH_TOKENS.c.revoked_at.is_not(None),
    )
)


def identity_of(executor: Any, claims: tokens.AccessClaims) -> Identity:
    """The token's user as the database has it now, read on `executor` (a
    `db.engine.Transaction`) with the session revocation check, which needs no Redis. 401
    ApiError when the user is gone or inactive, or the session revoked."""
    row = executor.execute(
        _USER_OF_TOKEN, {"user_id": claims.user_id, "session_id": claims.session_id}
    ).first()
    if row is None:
        raise unauthorized("invalid or expired token")
    if row.revoked:
        raise unauthorized("token has been revoked")
    if not row.active:
        raise unauthorized("invalid or expired token")
    return Identity(row.id, row.username, row.role, "jwt", claims.session_id)


def authenticate_jwt(token: str) -> tuple[Identity, tokens.AccessClaims]:
    """Verify an access token and load its user; raise 401 ApiError on anything wrong."""
    claims = verify_access_token(token)
    with transaction() as tx:
        return identity_of(tx, claims), claims


def authenticate_api_key(raw: str) -> Identity:
    if not api_keys.looks_like_key(raw):
        raise unauthorized("invalid API key")
    with unit_of_work() as session:
        row = api_keys.resolve_api_key(session, raw)
        user = row.user if row is not None else None
        if user is None or not user.active:
            raise unauthorized("invalid API key")
        return Identity(user.id, user.username, user.role, "api_key")


def present(request: flask.Request) -> Identity | tokens.AccessClaims:
    """`authenticate` as far as it goes without looking up a token's user: the identity when
    no lookup is left (cached on the request, or an API key, whose lookup commits on its own),
    else the verified claims of the bearer token, for `identity_of`. 401 ApiError when the
    credentials are missing or wrong."""
    cached = request.environ.get(_CACHE_KEY)
    if isinstance(cached, Identity):
        return cached
    bearer = _bearer(request)
    key = request.headers.get("X-API-Key")
    if bearer is not None and key is not None:
        raise unauthorized("send either a bearer token or an API key, not both")
    if key is not None:
        identity = authenticate_api_key(key.strip())
    elif bearer is not None:
        if not bearer.startswith(api_keys.KEY_PREFIX):
            return verify_access_token(bearer)
        identity = authenticate_api_key(bearer)
    else:
        raise unauthorized(invalid=False)
    request.environ[_CACHE_KEY] = identity
    return identity


def authenticate(request: flask.Request) -> Identity:
    """The caller's identity, or ApiError 401 (with WWW-Authenticate: Bearer)."""
    presented = present(request)
    if isinstance(presented, Identity):
        return presented
    with transaction() as tx:
        identity = identity_of(tx, presented)
    request.environ[_CACHE_KEY] = identity
    return identity


def _allowed(identity: Identity, roles: tuple[str, ...]) -> Identity:
    if not identity.has_role(*roles):
        raise ApiError(403, "forbidden", "your role does not allow this")
    return identity


def require(request: flask.Request, *roles: str) -> Identity:
    """Authenticate, then 403 unless the role is one of `roles`. Admin always passes; with no
    roles given only admin does."""
    return _allowed(authenticate(request), roles)


def require_in(
    tx: Any, request: flask.Request, presented: Identity | tokens.AccessClaims, *roles: str
) -> Identity:
    """`require` finished on the caller's transaction `tx`: `presented` comes from `present`,
    and a bearer token's user is looked up in `tx` (an upload authenticates and stores in one
    transaction, still reading the user on every request)."""
    if isinstance(presented, Identity):
        identity = presented
    else:
        identity = identity_of(tx, presented)
        request.environ[_CACHE_KEY] = identity
    return _allowed(identity, roles)


def client_ip(request: flask.Request) -> str:
    """The caller's address, for login throttling and the audit log: the header named by
    CLIENT_IP_HEADER, which the proxy in front (the shipped gateways: X-Real-IP) sets to the
    address it saw, overwriting what the client sent; without it, the TCP peer. A
    client-supplied X-Forwarded-For is never believed: anyone could pick an address with it
    and escape the per-address delay."""
    header = get_settings().client_ip_header
    address = (request.headers.get(header) if header else None) or request.remote_addr or ""
    try:
        return str(ipaddress.ip_address(address.strip()))[:64]
    except ValueError:
        return "unknown"


def ensure_admin_user() -> None:
    """Create ADMIN_USERNAME / ADMIN_PASSWORD as admin when there is no user at all.

    Idempotent and safe when several processes start at once: a PostgreSQL advisory lock
    serialises them, and only the first finds the table empty.
    """
    from call_downloader.security.users import create_user

    settings = get_settings()
    if not settings.admin_username or not settings.admin_password:
        log.info("ADMIN_USERNAME/ADMIN_PASSWORD not set: no bootstrap admin")
        return
    with unit_of_work() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMIN_LOCK})
        if session.scalar(select(User.id).limit(1)) is not None:
            return
        try:
            create_user(
                session,
                settings.admin_username,
                Role.ADMIN,
                settings.admin_password,
                actor="system",
                client_ip=None,
            )
        except ApiError as exc:
            # A misconfigured bootstrap admin must be loud, and name the variable at fault.
            raise ValueError(f"ADMIN_USERNAME/ADMIN_PASSWORD rejected: {exc.message}") from exc
    log.info("created the bootstrap admin %r", settings.admin_username.strip().lower())
