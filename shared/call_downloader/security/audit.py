"""The audit log: who did what, to what, from where (logins, user, role and key changes).

Rows never carry secrets: `detail` is scrubbed of anything that looks like a password, token or
key before it is written, whatever the caller passed.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import AuditLog

log = logging.getLogger(__name__)

# Actions written by this package (other packages may add their own, same dotted style).
LOGIN_SUCCESS = "auth.login.success"
LOGIN_FAILURE = "auth.login.failure"
LOGOUT = "auth.logout"
REFRESH_REUSE = "auth.refresh.reuse_detected"
USER_CREATE = "user.create"
USER_UPDATE = "user.update"
USER_ROLE_CHANGE = "user.role_change"
USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105 - an action name
USER_PASSWORD_CHANGE = "user.password_change"  # noqa: S105
USER_DELETE = "user.delete"
API_KEY_CREATE = "api_key.create"
API_KEY_REVOKE = "api_key.revoke"

_SECRET_WORDS = ("password", "secret", "token", "authorization", "credential", "api_key", "apikey")
_SECRET_KEYS = {"key", "raw_key", "hash", "password_hash", "key_hash", "token_hash"}
REDACTED = "[redacted]"
# A whole API key or refresh token (a 12-character key *prefix* is fine), or a JWT.
_CREDENTIAL_RE = re.compile(r"cd[kr]_[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_KEYS or any(word in lowered for word in _SECRET_WORDS)


def scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with secret-looking fields replaced."""
    if depth > 5:
        return REDACTED
    if isinstance(value, dict):
        return {
            clean_text(str(k))[:100]: (REDACTED if _is_secret_name(str(k)) else scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v, depth + 1) for v in value[:50]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = clean_text(str(value))
    # Our own credentials are recognisable by their shape: never keep one, wherever it is.
    if _CREDENTIAL_RE.search(text):
        return REDACTED
    return text[:500]


def clean_text(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL; other control characters only confuse readers.
    return "".join(ch for ch in value if ch >= " " or ch in "\t")


def _clip(value: str | None, size: int) -> str | None:
    return None if value is None else clean_text(str(value))[:size]


def record(
    actor: str | None,
    action: str,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    session: Session | None = None,
) -> None:
    """Write one audit row: in `session` (the same transaction as the change it describes)
    when given, else in a transaction of its own."""
    row = AuditLog(
        actor=_clip(actor, 150),
        action=action[:64],
        target=_clip(target, 200),
        client_ip=_clip(client_ip, 64),
        detail=scrub(detail or {}),
    )
    if session is not None:
        session.add(row)
        return
    with unit_of_work() as own:
        own.add(row)


def entry_to_dict(row: AuditLog) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "at": row.at.isoformat() if row.at else None,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "client_ip": row.client_ip,
        "detail": row.detail or {},
    }


def list_entries(
    session: Session,
    *,
    limit: int = 50,
    before_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[AuditLog], int | None]:
    """Newest first, keyset-paged on id: return (rows, next cursor or None)."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    if action:
        # A trailing "." filters a family of actions, e.g. "auth." or "user.".
        if action.endswith("."):
            query = query.where(AuditLog.action.startswith(action, autoescape=True))
        else:
            query = query.where(AuditLog.action == action)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if target:
        query = query.where(AuditLog.target == target)
    if since:
        query = query.where(AuditLog.at >= since)
    if until:
        query = query.where(AuditLog.at < until)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
