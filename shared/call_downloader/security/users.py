"""User management, shared by the HTTP API and the CLI.

Every function takes the caller's session (one transaction per operation, audit row included)
and raises ApiError with a 4xx status for anything the caller got wrong, so the API answers it
as is and the CLI prints its message.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from call_downloader.db.models import Role, User
from call_downloader.http.errors import ApiError
from call_downloader.security import audit
from call_downloader.security.passwords import (
    PasswordPolicyError,
    hash_password,
    verify_password,
)
from call_downloader.security.tokens import revoke_user_sessions

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,149}$")
SORTS = {
    "username": (User.username.asc(),),
    "-username": (User.username.desc(),),
    "created_at": (User.created_at.asc(), User.username.asc()),
    "-created_at": (User.created_at.desc(), User.username.asc()),
    "role": (User.role.asc(), User.username.asc()),
    "-role": (User.role.desc(), User.username.asc()),
}


def normalize_username(raw: object) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case."""
    if not isinstance(raw, str):
        raise ApiError(422, "validation_error", "username must be a string")
    name = raw.strip().lower()
    if not USERNAME_RE.match(name):
        raise ApiError(
            422,
            "validation_error",
            "username must be 3-150 characters: letters, digits and . _ @ - "
            "(starting with a letter or digit)",
        )
    return name


def validate_role(role: object) -> str:
    if not isinstance(role, str) or role not in Role.ALL:
        raise ApiError(422, "validation_error", f"role must be one of: {', '.join(Role.ALL)}")
    return role


def _hash(password: object) -> str:
    try:
        return hash_password(password)  # type: ignore[arg-type]
    except PasswordPolicyError as exc:
        raise ApiError(422, "invalid_password", str(exc)) from exc


def user_to_dict(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "role": user.role,
        "active": user.active,
        "has_password": bool(user.password_hash),
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "updated_at": user.updated_at.isoformat() if user.updated_at else None,
    }


def create_user(
    session: Session,
    username: object,
    role: object,
    password: object = None,
    *,
    active: bool = True,
    actor: str | None = None,
    client_ip: str | None = None,
) -> User:
    """Create a user. Every role but `source` needs a password (sources may live on API keys)."""
    name = normalize_username(username)
    role = validate_role(role)
    if password is None and role != Role.SOURCE:
        raise ApiError(422, "invalid_password", "a password is required for this role")
    password_hash = _hash(password) if password is not None else None
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise ApiError(409, "conflict", "a user with this username already exists")
    user = User(id=uuid.uuid4(), username=name, role=role, password_hash=password_hash,
                active=active)
    session.add(user)
    session.flush()
    audit.record(actor, audit.USER_CREATE, target=f"user:{name}", client_ip=client_ip,
                 detail={"user_id": str(user.id), "role": role, "active": active},
                 session=session)
    return user


def parse_user_id(raw: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise ApiError(404, "not_found", "no such user") from exc


def get_user(session: Session, user_id: object, *, for_update: bool = False) -> User:
    uid = parse_user_id(user_id)
    query = select(User).where(User.id == uid)
    if for_update:
        query = query.with_for_update()
    user = session.scalar(query)
    if user is None:
        raise ApiError(404, "not_found", "no such user")
    return user


def get_by_username(session: Session, username: object) -> User:
    user = session.scalar(select(User).where(User.username == normalize_username(username)))
    if user is None:
        raise ApiError(404, "not_found", "no such user")
    return user


def list_users(
    session: Session,
    *,
    role: str | None = None,
    active: bool | None = None,
    q: str | None = None,
    sort: str = "username",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[User], int]:
    if sort not in SORTS:
        raise ApiError(400, "invalid_parameter", f"sort must be one of: {', '.join(SORTS)}")
    query = select(User)
    if role is not None:
        query = query.where(User.role == validate_role(role))
    if active is not None:
        query = query.where(User.active.is_(active))
    if q:
        query = query.where(User.username.contains(q.lower(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*SORTS[sort]).limit(limit).offset(offset))
    return list(rows), int(total)


def _guard_last_admin(session: Session, user: User) -> None:
    """Refuse to leave the deployment without an active admin. Locks the admin rows so two
    concurrent demotions cannot both pass."""
    admins = session.scalars(
        select(User.id).where(User.role == Role.ADMIN, User.active.is_(True)).with_for_update()
    ).all()
    if user.id in admins and len(admins) <= 1:
        raise ApiError(409, "last_admin", "this is the last active admin; create another first")


def update_user(
    session: Session,
    user_id: object,
    *,
    role: object = None,
    active: object = None,
    actor: str | None = None,
    client_ip: str | None = None,
) -> User:
    if active is not None and not isinstance(active, bool):
        raise ApiError(422, "validation_error", "active must be true or false")
    new_role = validate_role(role) if role is not None else None
    user = get_user(session, user_id, for_update=True)
    changes: dict[str, Any] = {}
    demoting = new_role is not None and new_role != user.role and user.role == Role.ADMIN
    deactivating = active is False and user.active
    if (demoting or deactivating) and user.role == Role.ADMIN:
        _guard_last_admin(session, user)
    if new_role is not None and new_role != user.role:
        changes["role"] = {"from": user.role, "to": new_role}
        audit.record(actor, audit.USER_ROLE_CHANGE, target=f"user:{user.username}",
                     client_ip=client_ip,
                     detail={"user_id": str(user.id), "from": user.role, "to": new_role},
                     session=session)
        user.role = new_role
    if active is not None and active != user.active:
        changes["active"] = {"from": user.active, "to": active}
        user.active = active
        if not active:
            revoke_user_sessions(session, user.id)
    if changes:
        audit.record(actor, audit.USER_UPDATE, target=f"user:{user.username}",
                     client_ip=client_ip, detail={"user_id": str(user.id), "changes": changes},
                     session=session)
    session.flush()
    return user


def reset_password(
    session: Session,
    user_id: object,
    password: object,
    *,
    actor: str | None = None,
    client_ip: str | None = None,
) -> User:
    """Set a new password (admin) and end the user's sessions."""
    new_hash = _hash(password)
    user = get_user(session, user_id, for_update=True)
    user.password_hash = new_hash
    revoke_user_sessions(session, user.id)
    audit.record(actor, audit.USER_PASSWORD_RESET, target=f"user:{user.username}",
                 client_ip=client_ip, detail={"user_id": str(user.id)}, session=session)
    session.flush()
    return user


def change_own_password(
    session: Session,
    user_id: uuid.UUID,
    current_password: object,
    new_password: object,
    *,
    client_ip: str | None = None,
) -> User:
    """A user changes their own password; the current one must be right. Ends their sessions."""
    user = get_user(session, user_id, for_update=True)
    ok, _ = verify_password(current_password, user.password_hash)
    if not ok:
        raise ApiError(403, "forbidden", "the current password is not correct")
    user.password_hash = _hash(new_password)
    revoke_user_sessions(session, user.id)
    audit.record(user.username, audit.USER_PASSWORD_CHANGE, target=f"user:{user.username}",
                 client_ip=client_ip, detail={"user_id": str(user.id)}, session=session)
    session.flush()
    return user


def delete_user(
    session: Session,
    user_id: object,
    *,
    actor: str | None = None,
    client_ip: str | None = None,
) -> None:
    from call_downloader.db.models import Call

    user = get_user(session, user_id, for_update=True)
    if user.role == Role.ADMIN and user.active:
        _guard_last_admin(session, user)
    # Calls keep their source for ever (the history must stay whole): such users are
    # deactivated instead of deleted.
    if session.scalar(select(Call.id).where(Call.source_id == user.id).limit(1)) is not None:
        raise ApiError(409, "conflict", "this user has posted calls; deactivate it instead")
    username = user.username
    session.delete(user)
    session.flush()
    audit.record(actor, audit.USER_DELETE, target=f"user:{username}", client_ip=client_ip,
                 detail={"user_id": str(user_id)}, session=session)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
