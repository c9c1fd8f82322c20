"""Access JWTs, refresh tokens and logout.

Access tokens: HS256 JWTs (python-jose) with `sub` (user id), `role`, `iss`, `aud`, `iat`,
`nbf`, `exp`, `jti`, `sid` (the login session = refresh-token family) and `token_use`.
Decoding always names the one accepted algorithm (python-jose through 3.5.0 can otherwise be
tricked into HMAC-verifying with a public key) and requires every claim. `JWT_SECRET` may list
several secrets: the first signs, all verify, so a secret can be rotated without logging
everyone out.

Refresh tokens: opaque 256-bit random strings, stored as SHA-256 in `refresh_tokens`. Each use
rotates it (the old one is marked used, a new one of the same family is issued); presenting a
used token again means it leaked, so the whole family (the login session) is revoked, and
with it every access token carrying that `sid`.

Logout puts the access token's `jti` on a Redis denylist until it expires and revokes the
session's refresh family in PostgreSQL (which also stops that session's access tokens, so
logout holds even when Redis is unavailable).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import jwt
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from call_downloader.config import Settings, get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import RefreshToken, Role, User
from call_downloader.security import audit

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
TOKEN_USE = "access"  # noqa: S105 - a claim value, not a secret
REFRESH_PREFIX = "cdr_"
MAX_TOKEN_LENGTH = 4096  # far above any token we issue; bounds the work on garbage
CLOCK_SKEW_SECONDS = 5
REDIS_RETRY_SECONDS = 5.0
REQUIRED_CLAIMS = ("sub", "role", "iss", "aud", "iat", "exp", "jti", "sid", "token_use")


class TokenError(Exception):
    """The token is invalid, expired, revoked or forged. Answer 401; the message is safe."""


class RefreshReuseError(TokenError):
    """A refresh token was presented again after rotation: its family has been revoked."""


class NotConfiguredError(RuntimeError):
    """No JWT secret is configured: tokens can be neither issued nor verified."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    jti: str
    session_id: uuid.UUID
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    role: str
    user_id: uuid.UUID
    session_id: uuid.UUID

    def as_response(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "role": self.role,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _secrets(settings: Settings) -> tuple[str, ...]:
    found = settings.jwt_secrets
    if not found:
        raise NotConfiguredError("JWT_SECRET is not set")
    return found


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --- access tokens -------------------------------------------------------------------------


def issue_access_token(
    user_id: uuid.UUID,
    role: str,
    session_id: uuid.UUID,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    lifetime: timedelta | None = None,
) -> tuple[str, AccessClaims]:
    settings = settings or get_settings()
    now = now or _now()
    lifetime = lifetime or timedelta(minutes=settings.access_token_minutes)
    iat = int(now.timestamp())
    exp = iat + max(1, int(lifetime.total_seconds()))
    jti = uuid.uuid4().hex
    claims = {
        "sub": str(user_id),
        "role": role,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": jti,
        "sid": str(session_id),
        # Other tokens may one day be signed with the same secret (e.g. single-purpose callback
        # tokens): only tokens minted here as access tokens are accepted as such.
        "token_use": TOKEN_USE,
    }
    token = jwt.encode(claims, _secrets(settings)[0], algorithm=ALGORITHM)
    return token, AccessClaims(user_id, role, jti, session_id, iat, exp)


_DECODE_OPTIONS = {
    "verify_signature": True,
    "verify_aud": True,
    "verify_iat": True,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "require_aud": True,
    "require_iat": True,
    "require_exp": True,
    "require_iss": True,
    "require_sub": True,
    "require_jti": True,
    # A few seconds for clocks of different hosts that disagree slightly (nbf/exp).
    "leeway": CLOCK_SKEW_SECONDS,
}


def decode_access_token(token: object, *, settings: Settings | None = None) -> AccessClaims:
    """Verify an access JWT against every configured secret; raise TokenError if anything is off."""
    settings = settings or get_settings()
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except Exception as exc:  # garbage of any shape is just an invalid token
        raise TokenError("malformed token") from exc
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise TokenError("unsupported token algorithm")
    claims: dict[str, Any] | None = None
    for secret in _secrets(settings):
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],  # never let the token choose
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options=_DECODE_OPTIONS,
            )
            break
        except Exception:  # noqa: BLE001 - wrong secret, bad claims or odd types: try the next
            continue
    if claims is None:
        raise TokenError("invalid or expired token")
    return _checked_claims(claims)


def _checked_claims(claims: dict[str, Any]) -> AccessClaims:
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise TokenError("invalid token")
    if claims.get("token_use") != TOKEN_USE:
        raise TokenError("invalid token")
    role = claims.get("role")
    jti = claims.get("jti")
    iat, exp = claims.get("iat"), claims.get("exp")
    if role not in Role.ALL or not isinstance(jti, str) or not 0 < len(jti) <= 64:
        raise TokenError("invalid token")
    if not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat, bool):
        raise TokenError("invalid token")
    if iat > int(_now().timestamp()) + CLOCK_SKEW_SECONDS:  # issued in the future: not ours
        raise TokenError("invalid token")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        session_id = uuid.UUID(str(claims["sid"]))
    except ValueError as exc:
        raise TokenError("invalid token") from exc
    return AccessClaims(user_id, role, jti, session_id, iat, exp)


# --- denylist ------------------------------------------------------------------------------


def _deny_key(jti: str) -> str:
    from call_downloader.storage.redis_client import key

    return key("auth", "deny", jti)


# After a Redis error the denylist is skipped for a few seconds, so that Redis being down does
# not add a connection timeout to every authenticated request.
_redis_down_until = 0.0


def _redis_failed(exc: Exception, what: str) -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
    if type(exc).__name__ != "CacheDisabled":  # embedded mode without Redis: expected
        log.warning("%s: Redis unavailable (%s)", what, type(exc).__name__)


def deny_access_token(claims: AccessClaims) -> bool:
    """Deny this access token until it expires. False when Redis could not be written (the
    session revocation in PostgreSQL still stops the token)."""
    from call_downloader.storage.redis_client import get_redis

    ttl = claims.expires_at + CLOCK_SKEW_SECONDS - int(_now().timestamp())
    if ttl <= 0:
        return True
    try:
        get_redis().set(_deny_key(claims.jti), "1", ex=ttl)
        return True
    except Exception as exc:  # noqa: BLE001 - Redis is a cache; PostgreSQL holds the revocation
        _redis_failed(exc, "could not write the token denylist")
        return False


def is_denied(jti: str) -> bool:
    """True when the token was logged out. Redis down: False (documented fail-open), because
    the session check in PostgreSQL that follows covers every logged-out session."""
    from call_downloader.storage.redis_client import get_redis

    if time.monotonic() < _redis_down_until:
        return False
    try:
        return bool(get_redis().exists(_deny_key(jti)))
    except Exception as exc:  # noqa: BLE001
        _redis_failed(exc, "token denylist unavailable")
        return False


# --- refresh tokens and sessions -----------------------------------------------------------


def _new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def _refresh_lifetime(settings: Settings) -> timedelta:
    return timedelta(days=settings.refresh_token_days)


def _issue_pair(
    session: Session, user: User, family_id: uuid.UUID, settings: Settings
) -> TokenPair:
    now = _now()
    raw = _new_refresh_token()
    lifetime = _refresh_lifetime(settings)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=sha256_hex(raw),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    access, claims = issue_access_token(user.id, user.role, family_id, settings=settings, now=now)
    return TokenPair(
        access_token=access,
        expires_in=claims.expires_at - claims.issued_at,
        refresh_token=raw,
        refresh_expires_in=int(lifetime.total_seconds()),
        role=user.role,
        user_id=user.id,
        session_id=family_id,
    )


def start_session(session: Session, user: User, *, settings: Settings | None = None) -> TokenPair:
    """A login: a new refresh family and the first token pair (in the caller's transaction)."""
    settings = settings or get_settings()
    _secrets(settings)  # fail before writing anything when not configured
    # Housekeeping bounded to this user: rotated tokens pile up, expired ones are useless.
    session.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.expires_at < _now()
        )
    )
    return _issue_pair(session, user, uuid.uuid4(), settings)


def revoke_family(session: Session, family_id: uuid.UUID) -> int:
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_user_sessions(session: Session, user_id: uuid.UUID) -> int:
    """End every session of a user (password reset, deactivation): their refresh tokens stop
    working and so do the access tokens issued in those sessions."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _looks_like_refresh_token(raw: object) -> bool:
    return isinstance(raw, str) and raw.startswith(REFRESH_PREFIX) and 20 < len(raw) <= 200


def rotate_refresh_token(
    raw: object, *, client_ip: str | None = None, settings: Settings | None = None
) -> TokenPair:
    """Exchange a refresh token for a new pair. Raise TokenError when it is unknown, expired,
    revoked or its user is inactive; RefreshReuseError (after revoking the family, committed)
    when it was already used."""
    settings = settings or get_settings()
    _secrets(settings)
    if not _looks_like_refresh_token(raw):
        raise TokenError("invalid refresh token")
    assert isinstance(raw, str)
    reused: tuple[uuid.UUID, str] | None = None
    with unit_of_work() as session:
        # Row lock: two concurrent uses of one token cannot both rotate it.
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(raw)).with_for_update()
        )
        if row is None:
            raise TokenError("invalid refresh token")
        user = session.get(User, row.user_id)
        now = _now()
        if row.revoked_at is not None:
            raise TokenError("invalid refresh token")
        if row.used_at is not None:
            revoke_family(session, row.family_id)
            username = user.username if user else None
            audit.record(
                username,
                "auth.refresh.reuse_detected",
                target=f"user:{row.user_id}",
                client_ip=client_ip,
                detail={"session_id": str(row.family_id)},
                session=session,
            )
            reused = (row.family_id, username or "")
        elif row.expires_at <= now:
            raise TokenError("invalid refresh token")
        elif user is None or not user.active:
            raise TokenError("invalid refresh token")
        else:
            row.used_at = now
            pair = _issue_pair(session, user, row.family_id, settings)
    if reused is not None:  # raised after the commit so the revocation sticks
        log.warning("refresh token reuse detected; session %s revoked", reused[0])
        raise RefreshReuseError("refresh token already used; the session has been revoked")
    return pair


def family_of(session: Session, raw: object) -> RefreshToken | None:
    if not _looks_like_refresh_token(raw):
        return None
    assert isinstance(raw, str)
    return session.scalar(select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(raw)))
