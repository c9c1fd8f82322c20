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

import flask
from sqlalchemy import exists, select, text

from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import RefreshToken, Role, User
from call_downloader.http.errors import ApiError
from call_downloader.security import api_keys, tokens

log = logging.getLogger(__name__)

_CACHE_KEY = "call_downloader.identity"
# Arbitrary constant: the PostgreSQL advisory lock serialising the first-admin bootstrap.
_ADMIN_LOCK = 0x63646C61646D
REALM = 'Bearer realm="call-downloader"'


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID
    username: str
    role: str
    via: str  # "jwt" | "api_key"

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


def authenticate_jwt(token: str) -> tuple[Identity, tokens.AccessClaims]:
    """Verify an access token and load its user; raise 401 ApiError on anything wrong."""
    try:
        claims = tokens.decode_access_token(token)
    except tokens.NotConfiguredError as exc:
        log.error("JWT_SECRET is not set: bearer tokens cannot be verified")
        raise unauthorized("invalid or expired token") from exc
    except tokens.TokenError as exc:
        raise unauthorized("invalid or expired token") from exc
    if tokens.is_denied(claims.jti):
        raise unauthorized("token has been revoked")
    with unit_of_work() as session:
        # One query: the user, and whether the token's session was revoked (logout, refresh
        # reuse, password reset, deactivation) - this check needs no Redis.
        session_revoked = exists().where(
            RefreshToken.family_id == claims.session_id, RefreshToken.revoked_at.is_not(None)
        )
        row = session.execute(
            select(User, session_revoked).where(User.id == claims.user_id)
        ).first()
    if row is None:
        raise unauthorized("invalid or expired token")
    user, revoked = row
    if revoked:
        raise unauthorized("token has been revoked")
    if not user.active:
        raise unauthorized("invalid or expired token")
    return Identity(user.id, user.username, user.role, "jwt"), claims


def authenticate_api_key(raw: str) -> Identity:
    if not api_keys.looks_like_key(raw):
        raise unauthorized("invalid API key")
    with unit_of_work() as session:
        row = api_keys.resolve_api_key(session, raw)
        user = row.user if row is not None else None
        if user is None or not user.active:
            raise unauthorized("invalid API key")
        return Identity(user.id, user.username, user.role, "api_key")


def authenticate(request: flask.Request) -> Identity:
    """The caller's identity, or ApiError 401 (with WWW-Authenticate: Bearer)."""
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
        if bearer.startswith(api_keys.KEY_PREFIX):
            identity = authenticate_api_key(bearer)
        else:
            identity = authenticate_jwt(bearer)[0]
    else:
        raise unauthorized(invalid=False)
    request.environ[_CACHE_KEY] = identity
    return identity


def require(request: flask.Request, *roles: str) -> Identity:
    """Authenticate, then 403 unless the role is one of `roles`. Admin always passes; with no
    roles given only admin does."""
    identity = authenticate(request)
    if not identity.has_role(*roles):
        raise ApiError(403, "forbidden", "your role does not allow this")
    return identity


def client_ip(request: flask.Request) -> str:
    """The caller's address. `X-Forwarded-For` is trusted only for the number of proxy hops
    configured (`trusted_proxy_hops`, default 0): otherwise anyone could pick an address and
    escape the per-address login throttle."""
    hops = int(getattr(get_settings(), "trusted_proxy_hops", 0) or 0)
    address = request.remote_addr or ""
    if hops > 0:
        forwarded = [
            part.strip()
            for part in request.headers.get("X-Forwarded-For", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))[:64]
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
