"""API keys for source applications (`X-API-Key`).

A key is `cdk_` + 256 random bits (url-safe base64). Only its SHA-256 is stored: with that much
entropy a fast hash is safe, and lookup is one indexed equality. The full key is shown once, at
creation; lists show the first characters (`prefix`) so a key can be recognised.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from call_downloader.db.models import ApiKey, User

KEY_PREFIX = "cdk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8
_KEY_RE = re.compile(r"^cdk_[A-Za-z0-9_-]{43}$")
# `last_used_at` is written at most this often per key: a busy source must not turn every
# upload into an extra UPDATE.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class CreatedKey:
    """A new key. `key` is the secret: show it once, never store or log it."""

    id: uuid.UUID
    key: str
    prefix: str
    name: str
    user_id: uuid.UUID
    username: str
    created_at: datetime

    def as_response(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "key": self.key,
            "prefix": self.prefix,
            "name": self.name,
            "user_id": str(self.user_id),
            "username": self.username,
            "created_at": self.created_at.isoformat(),
        }


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(value: object) -> bool:
    return isinstance(value, str) and bool(_KEY_RE.match(value))


def create_api_key(session: Session, user: User, name: str = "") -> CreatedKey:
    key = generate_key()
    now = datetime.now(UTC)
    row = ApiKey(
        id=uuid.uuid4(),
        user_id=user.id,
        name=(name or "")[:MAX_NAME_LENGTH],
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_key(key),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return CreatedKey(row.id, key, row.prefix, row.name, user.id, user.username, now)


def list_api_keys(
    session: Session, *, user_id: uuid.UUID | None = None, include_revoked: bool = True
) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_api_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """Revoke (idempotent); None when there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    return row


def resolve_api_key(session: Session, raw: object) -> ApiKey | None:
    """The live key matching `raw` (not revoked), with its user loaded; None otherwise.
    Touches `last_used_at` at most once per LAST_USED_RESOLUTION."""
    if not looks_like_key(raw):
        return None
    assert isinstance(raw, str)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw)))
    if row is None or row.revoked_at is not None:
        return None
    now = datetime.now(UTC)
    cutoff = now - LAST_USED_RESOLUTION
    if row.last_used_at is None or row.last_used_at < cutoff:
        # Conditional: concurrent requests of the same minute write once between them.
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return row


def key_to_dict(row: ApiKey) -> dict[str, Any]:
    """The listable facts of a key: never the key nor its hash."""
    return {
        "id": str(row.id),
        "prefix": row.prefix,
        "name": row.name,
        "user_id": str(row.user_id),
        "username": row.user.username if row.user is not None else None,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "active": row.revoked_at is None,
    }
