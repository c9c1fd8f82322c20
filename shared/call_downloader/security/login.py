"""Password login and logout, with throttling and audit.

A failed login looks the same whatever went wrong (unknown user, wrong password, inactive
account, account without password): same status, same message, one bcrypt verification each.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import select

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import User
from call_downloader.http.errors import ApiError
from call_downloader.security import audit, tokens
from call_downloader.security.passwords import verify_password
from call_downloader.security.throttle import LoginThrottle, get_throttle
from call_downloader.security.users import USERNAME_RE

log = logging.getLogger(__name__)

MAX_USERNAME_INPUT = 200
FAILED = "invalid username or password"


def _failure() -> ApiError:
    return ApiError(
        401,
        "invalid_credentials",
        FAILED,
        headers={"WWW-Authenticate": 'Bearer realm="call-downloader"'},
    )


def submitted_name(name: str, exists: bool) -> str:
    """How a failed login's username may be logged and audited: as typed when such a user
    exists, else a short hash. A name that is no user is often a password typed in the wrong
    field (or the previous attempt's password): it must not end up in logs in clear."""
    if exists:
        return name
    return "unknown:" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]


def login(
    username: object,
    password: object,
    client_ip: str,
    *,
    throttle: LoginThrottle | None = None,
) -> tokens.TokenPair:
    throttle = throttle or get_throttle()
    name = username.strip().lower() if isinstance(username, str) else ""
    name = name[:MAX_USERNAME_INPUT]
    slot = throttle.reserve(name, client_ip)  # 429 when this attempt must wait
    reason = ""
    pair: tokens.TokenPair | None = None
    with unit_of_work() as session:
        # A name that cannot exist is not looked up (and NUL bytes never reach PostgreSQL).
        valid_name = bool(USERNAME_RE.match(name))
        user = session.scalar(select(User).where(User.username == name)) if valid_name else None
        ok, new_hash = verify_password(password, user.password_hash if user else None)
        if user is None:
            reason = "unknown_user"
        elif not ok:
            reason = "bad_password" if user.password_hash else "no_password"
        elif not user.active:
            reason = "inactive"
        else:
            if new_hash:
                user.password_hash = new_hash
            pair = tokens.start_session(session, user)
            audit.record(
                user.username,
                audit.LOGIN_SUCCESS,
                target=f"user:{user.username}",
                client_ip=client_ip,
                detail={"session_id": str(pair.session_id)},
                session=session,
            )
        if pair is None:
            # The audit log is admin-only, so it may say why; the caller is never told.
            shown = submitted_name(name, user is not None)
            audit.record(
                user.username if user else None,
                audit.LOGIN_FAILURE,
                target=f"user:{shown}",
                client_ip=client_ip,
                detail={"reason": reason},
                session=session,
            )
    if pair is None:
        log.info("login failed for %r from %s", shown, client_ip)
        raise _failure()
    slot.succeeded()
    log.info("login ok for %r from %s", name, client_ip)
    return pair


def logout(
    claims: tokens.AccessClaims | None,
    refresh_token: object,
    *,
    actor: str | None,
    client_ip: str,
) -> bool:
    """End the session of the access token and/or refresh token given. True if one was ended."""
    ended = False
    with unit_of_work() as session:
        families = set()
        if claims is not None:
            families.add(claims.session_id)
        row = tokens.family_of(session, refresh_token)
        if row is not None and (claims is None or row.user_id == claims.user_id):
            families.add(row.family_id)
        for family in families:
            tokens.revoke_family(session, family)
            ended = True
        if ended:
            audit.record(
                actor,
                audit.LOGOUT,
                target=f"user:{actor}" if actor else None,
                client_ip=client_ip,
                detail={"sessions": sorted(str(f) for f in families)},
                session=session,
            )
    if claims is not None:
        tokens.deny_access_token(claims)
    return ended
