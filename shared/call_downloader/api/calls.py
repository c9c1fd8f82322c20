"""Routes of the `calls` function: the read/admin API behind the UI.

This module holds the router, the call list and one call; the other capabilities register
their routes on the same router (audio, repairs, destinations, dead letters, stats).

    GET /api/v1/calls            list: filters, search, sort allow-list, cursor, counts
    GET /api/v1/calls/<id>       one call with result, deliveries, attempts and timeline
    GET /api/v1/sources          the accounts calls come from (for the list's filter)

It also serves the API's description (`api.openapi`: GET /api/v1/openapi.json): every /api/v1
path the other functions do not own is this function's.

A `source` sees only its own calls; to it, others' calls do not exist (404).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

import flask
from sqlalchemy import ColumnElement, Text, cast, exists, func, or_, select, tuple_
from sqlalchemy.orm import Session

from call_downloader.api import (
    audio_stream,
    dead_letters,
    destinations,
    openapi,
    params,
    repairs,
    stats,
)
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, CallStatus, Role, User
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.pipeline.views import call_json, for_source
from call_downloader.security.identity import Identity, require

router = Router("calls")
READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SOURCE)
STAFF = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_QUERY_LENGTH = 100


@dataclass(frozen=True)
class SortKey:
    """One allowed sort: the SQL expression (never NULL, so keyset paging is exact) and how a
    cursor value of it is written and read back."""

    column: str
    kind: str  # "datetime" | "float" | "int" | "str"

    def expression(self) -> ColumnElement[Any]:
        col = {
            "received_at": Call.received_at,
            "updated_at": Call.updated_at,
            "duration_seconds": func.coalesce(Call.duration_seconds, -1.0),
            "size_bytes": func.coalesce(Call.size_bytes, -1),
            "external_id": func.coalesce(Call.external_id, ""),
            "status": Call.status,
        }[self.column]
        return col

    def dump(self, value: Any) -> Any:
        if self.kind == "datetime":
            return value.isoformat()
        return value

    def load(self, raw: Any) -> Any:
        if self.kind == "datetime" and isinstance(raw, str):
            return params.parse_datetime(raw, "cursor")
        if self.kind == "float" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if self.kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if self.kind == "str" and isinstance(raw, str) and len(raw) <= 300:
            return raw
        raise params.bad("cursor", "is not a cursor of this list")


SORT_KEYS = {
    "received_at": SortKey("received_at", "datetime"),
    "updated_at": SortKey("updated_at", "datetime"),
    "duration_seconds": SortKey("duration_seconds", "float"),
    "size_bytes": SortKey("size_bytes", "int"),
    "external_id": SortKey("external_id", "str"),
    "status": SortKey("status", "str"),
}
SORTS = tuple(s for name in SORT_KEYS for s in (name, f"-{name}"))


def parse_call_id(value: str) -> uuid.UUID:
    return params.path_uuid(value, "call")


def visible_call(session: Session, identity: Identity, cid: uuid.UUID) -> Call:
    call = session.get(Call, cid)
    # A source sees only its own calls; to it, others' calls do not exist.
    if call is None or (identity.role == Role.SOURCE and call.source_id != identity.user_id):
        raise ApiError(404, "not_found", "no such call")
    return call


@router.route("/api/v1/calls/<call_id>", methods=["GET"])
def get_call(request: flask.Request, call_id: str) -> dict:  # type: ignore[type-arg]
    identity = require(request, *READERS)
    params.query(request, set())
    cid = parse_call_id(call_id)
    with unit_of_work() as session:
        call = visible_call(session, identity, cid)
        body = call_json(session, cid)
        body["source"] = session.scalar(select(User.username).where(User.id == call.source_id))
        body["result_versions"] = _result_versions(session, cid)
        return for_source(body) if identity.role == Role.SOURCE else body


def _result_versions(session: Session, cid: uuid.UUID) -> list[dict[str, Any]]:
    from call_downloader.db.models import AiResult

    rows = session.execute(
        select(AiResult.version, AiResult.created_at)
        .where(AiResult.call_id == cid)
        .order_by(AiResult.version)
    ).all()
    return [{"version": v, "created_at": at.isoformat() if at else None} for v, at in rows]


# --- the list ------------------------------------------------------------------------------


def encode_cursor(sort: str, value: Any, cid: uuid.UUID) -> str:
    raw = json.dumps([sort, value, str(cid)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str, sort: str) -> tuple[Any, uuid.UUID]:
    """Read a cursor back, checking every part: it is opaque to clients, not trusted."""
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise params.bad("cursor", "is not a cursor of this list") from None
    if not isinstance(data, list) or len(data) != 3 or not isinstance(data[2], str):
        raise params.bad("cursor", "is not a cursor of this list")
    if data[0] != sort:
        raise params.bad("cursor", "belongs to another sort order: start from the first page")
    key = SORT_KEYS[sort.lstrip("-")]
    try:
        cid = uuid.UUID(data[2])
    except ValueError:
        raise params.bad("cursor", "is not a cursor of this list") from None
    return key.load(data[1]), cid


def _filters(
    identity: Identity, args: dict[str, str], session: Session
) -> tuple[list[ColumnElement[bool]], list[str]]:
    """The WHERE clauses of the list (all but status) and the status filter."""
    clauses: list[ColumnElement[bool]] = []
    if identity.role == Role.SOURCE:
        clauses.append(Call.source_id == identity.user_id)
    source = args.get("source", "").strip()
    if source and identity.role != Role.SOURCE:
        try:
            clauses.append(Call.source_id == uuid.UUID(source))
        except ValueError:
            user_id = session.scalar(select(User.id).where(User.username == source.lower()))
            # An unknown name matches nothing (rather than an error): it is a filter.
            clauses.append(Call.source_id == user_id if user_id else Call.id.is_(None))
    since, until = params.date_time(args, "since"), params.date_time(args, "until")
    if since and until and since > until:
        raise params.bad("since", "is after until")
    if since:
        clauses.append(Call.received_at >= since)
    if until:
        clauses.append(Call.received_at < until)
    q = args.get("q", "").strip()
    if len(q) > MAX_QUERY_LENGTH:
        raise params.bad("q", f"longer than {MAX_QUERY_LENGTH} characters")
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        search = [
            Call.external_id.ilike(pattern, escape="\\"),
            cast(Call.metadata_, Text).ilike(pattern, escape="\\"),
            Call.filename.ilike(pattern, escape="\\"),
        ]
        try:
            search.append(Call.id == uuid.UUID(q))
        except ValueError:
            pass
        clauses.append(or_(*search))
    statuses = params.choice_list(args, "status", CallStatus.ALL)
    return clauses, statuses


@router.route("/api/v1/calls", methods=["GET"])
def list_calls(request: flask.Request) -> Any:
    identity = require(request, *READERS)
    args = params.query(
        request, {"status", "source", "since", "until", "q", "sort", "cursor", "limit", "counts"}
    )
    sort = args.get("sort") or "-received_at"
    if sort not in SORTS:
        raise params.bad("sort", f"must be one of: {', '.join(SORTS)}")
    limit = params.integer(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    want_counts = params.boolean(args, "counts", True)
    key = SORT_KEYS[sort.lstrip("-")]
    descending = sort.startswith("-")
    expr = key.expression()

    with unit_of_work() as session:
        clauses, statuses = _filters(identity, args, session)
        query = select(Call, expr).where(*clauses)
        if statuses:
            query = query.where(Call.status.in_(statuses))
        if args.get("cursor"):
            value, after_id = decode_cursor(args["cursor"], sort)
            position = tuple_(expr, Call.id)
            query = query.where(
                position < tuple_(value, after_id)
                if descending
                else position > tuple_(value, after_id)
            )
        order = (expr.desc(), Call.id.desc()) if descending else (expr.asc(), Call.id.asc())
        found = session.execute(query.order_by(*order).limit(limit + 1)).all()
        more = len(found) > limit
        found = found[:limit]
        names = _usernames(session, {c.source_id for c, _ in found})
        items = []
        for call, _ in found:
            item = call_json(session, call.id, detail=False)
            item["source"] = names.get(call.source_id)
            items.append(for_source(item) if identity.role == Role.SOURCE else item)
        next_cursor = None
        if more and found:
            last, last_value = found[-1]
            next_cursor = encode_cursor(sort, key.dump(last_value), last.id)
        body: dict[str, Any] = {"items": items, "next_cursor": next_cursor, "sort": sort}
        if want_counts:
            counts = dict.fromkeys(CallStatus.ALL, 0)
            for status, n in session.execute(
                select(Call.status, func.count()).where(*clauses).group_by(Call.status)
            ):
                counts[status] = n
            body["counts"] = counts
            body["total"] = sum(n for s, n in counts.items() if not statuses or s in statuses)
        return body


def _usernames(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


@router.route("/api/v1/sources", methods=["GET"])
def list_sources(request: flask.Request) -> Any:
    """Accounts that send calls: source accounts, and anyone who has sent one."""
    require(request, *STAFF)
    params.query(request, set())
    with unit_of_work() as session:
        has_calls = exists().where(Call.source_id == User.id)
        rows = session.execute(
            select(User.id, User.username, User.role)
            .where(or_(User.role == Role.SOURCE, has_calls))
            .order_by(User.username)
        ).all()
    return {"items": [{"id": str(i), "username": n, "role": r} for i, n, r in rows]}


for _module in (audio_stream, repairs, destinations, dead_letters, stats, openapi):
    _module.register(router)
router.also_served("/api/v1/calls", ["POST"])  # uploads: the ingest function's
