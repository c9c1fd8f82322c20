"""Destinations over HTTP: where results are delivered (SPEC 3.3, issue 4).

    GET   /api/v1/destinations                    staff
    POST  /api/v1/destinations                    admin  {name, url, secret?, enabled?}
    GET   /api/v1/destinations/<id>               staff
    PATCH /api/v1/destinations/<id>               admin {name?, url?, enabled?}; operator {enabled}
    POST  /api/v1/destinations/<id>/rotate-secret admin  {overlap_seconds?, secret?}
    POST  /api/v1/destinations/<id>/test          admin, operator  one signed test event

A secret is shown whole only when it is made (create, rotate); lists show its last characters.
During a rotation the old secret keeps signing next to the new one until the overlap ends
(Standard Webhooks allows several signatures), so receivers can switch without losing a message.
URLs follow `pipeline.destinations.destination_policy`: public addresses only, unless
DESTINATION_URL_ALLOWLIST lists the host; never link-local or cloud metadata (SPEC 3.4). A
test answers with the status and timing; the body of the answer only for the destination of the
configuration or an allowlisted one, so the product is no window onto what an address serves.
The destination mirrored from DELIVERY_URL/DELIVERY_SECRET is managed by configuration: its URL,
name and secret are changed there, not here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from call_downloader.api import params
from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Delivery, Destination, Role
from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.net.ssrf import Policy, TargetError, UnresolvableTarget, check_url
from call_downloader.net.webhooks import generate_secret, post_webhook, sign_headers
from call_downloader.pipeline.destinations import destination_policy, signing_secrets
from call_downloader.security import audit
from call_downloader.security.identity import client_ip, require
from call_downloader.security.secret_rules import check_webhook_secret

STAFF = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
OPERATORS = (Role.ADMIN, Role.OPERATOR)  # switch destinations on and off, send test events
MAX_NAME = 100
MAX_URL = 2000
DEFAULT_OVERLAP_SECONDS = 24 * 3600
MAX_OVERLAP_SECONDS = 30 * 24 * 3600


def register(router: Router) -> None:
    base = "/api/v1/destinations"
    router.route(base, methods=["GET"])(list_destinations)
    router.route(base, methods=["POST"])(create_destination)
    router.route(f"{base}/<dest_id>", methods=["GET"])(get_destination)
    router.route(f"{base}/<dest_id>", methods=["PATCH"])(update_destination)
    router.route(f"{base}/<dest_id>/rotate-secret", methods=["POST"])(rotate_secret)
    router.route(f"{base}/<dest_id>/test", methods=["POST"])(send_test)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def destination_json(dest: Destination, counts: dict[str, int] | None = None) -> dict[str, Any]:
    expires = _aware(dest.previous_secret_expires_at)
    rotating = bool(dest.previous_secret and expires and expires > datetime.now(UTC))
    return {
        "id": str(dest.id),
        "name": dest.name,
        "url": dest.url,
        "enabled": dest.enabled,
        "from_config": dest.from_config,
        "secret_hint": "whsec_…" + dest.secret[-4:] if dest.secret else None,
        "rotating": rotating,
        "previous_secret_expires_at": expires.isoformat() if rotating and expires else None,
        "created_at": dest.created_at.isoformat() if dest.created_at else None,
        "updated_at": dest.updated_at.isoformat() if dest.updated_at else None,
        "deliveries": counts or {"pending": 0, "delivered": 0, "dead": 0},
    }


def _counts(session: Any, dest_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    out: dict[uuid.UUID, dict[str, int]] = {
        d: {"pending": 0, "delivered": 0, "dead": 0} for d in dest_ids
    }
    if not dest_ids:
        return out
    rows = session.execute(
        select(Delivery.destination_id, Delivery.status, func.count())
        .where(Delivery.destination_id.in_(dest_ids))
        .group_by(Delivery.destination_id, Delivery.status)
    ).all()
    for dest_id, status, n in rows:
        out[dest_id][status] = n
    return out


def checked_url(raw: Any) -> str:
    """The URL if a destination made through the API may send there, else 422."""
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(422, "validation_error", "url is required")
    url = raw.strip()
    if len(url) > MAX_URL:
        raise ApiError(422, "validation_error", f"url is longer than {MAX_URL} characters")
    try:
        check_url(url, policy=destination_policy(from_config=False))
    except UnresolvableTarget as exc:
        raise ApiError(
            422, "invalid_url", f"url: the host does not resolve ({exc.reason})"
        ) from None
    except TargetError as exc:
        raise ApiError(422, "invalid_url", f"url: {exc.reason}") from None
    return url


def _secret(raw: Any) -> str:
    if raw is None or raw == "":
        return generate_secret()
    if not isinstance(raw, str) or len(raw) > 200:
        raise ApiError(422, "validation_error", "secret must be a 'whsec_...' string")
    try:
        return check_webhook_secret(raw)
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"secret: {exc}") from None


def _get(session: Any, dest_id: str, *, lock: bool = False) -> Destination:
    did = params.path_uuid(dest_id, "destination")
    query = select(Destination).where(Destination.id == did)
    if lock:
        query = query.with_for_update()
    dest = session.execute(query).scalar_one_or_none()
    if dest is None:
        raise ApiError(404, "not_found", "no such destination")
    return dest


def list_destinations(request: flask.Request) -> Any:
    require(request, *STAFF)
    params.query(request, set())
    with unit_of_work() as session:
        rows = list(session.scalars(select(Destination).order_by(Destination.name)))
        counts = _counts(session, [d.id for d in rows])
        return {"items": [destination_json(d, counts[d.id]) for d in rows]}


def get_destination(request: flask.Request, dest_id: str) -> Any:
    require(request, *STAFF)
    params.query(request, set())
    with unit_of_work() as session:
        dest = _get(session, dest_id)
        return destination_json(dest, _counts(session, [dest.id])[dest.id])


def create_destination(request: flask.Request) -> Any:
    who = require(request)  # admins only (SPEC 3.4)
    params.query(request, set())
    data = params.json_body(request, {"name", "url", "secret", "enabled"}, empty_ok=False)
    name = params.body_string(data, "name", required=True, max_length=MAX_NAME)
    url = checked_url(data.get("url"))
    secret = _secret(data.get("secret"))
    enabled = params.body_bool(data, "enabled")
    try:
        with unit_of_work() as session:
            dest = Destination(
                name=name, url=url, secret=secret, enabled=True if enabled is None else enabled
            )
            session.add(dest)
            session.flush()
            body = destination_json(dest)
            audit.record(
                who.username,
                "destination.create",
                target=f"destination:{name}",
                client_ip=client_ip(request),
                detail={"url": url, "enabled": dest.enabled},
                session=session,
            )
    except IntegrityError:
        raise ApiError(409, "conflict", f"a destination named {name!r} exists already") from None
    body["secret"] = secret  # shown this once
    return (
        body,
        201,
        {"Location": f"/api/v1/destinations/{body['id']}", "Cache-Control": "no-store"},
    )


def update_destination(request: flask.Request, dest_id: str) -> Any:
    who = require(request, *OPERATORS)
    params.query(request, set())
    data = params.json_body(request, {"name", "url", "enabled"}, empty_ok=False)
    if not data:
        raise ApiError(422, "validation_error", "nothing to change: send name, url and/or enabled")
    if not who.is_admin and ({"name", "url"} & data.keys()):
        raise ApiError(403, "forbidden", "only admins change a destination's name or URL")
    name = params.body_string(data, "name", required="name" in data, max_length=MAX_NAME)
    url = checked_url(data["url"]) if "url" in data else None
    enabled = params.body_bool(data, "enabled")
    try:
        with unit_of_work() as session:
            dest = _get(session, dest_id, lock=True)
            if dest.from_config and (
                (name is not None and name != dest.name) or (url is not None and url != dest.url)
            ):
                raise ApiError(
                    409,
                    "managed_by_configuration",
                    "this destination comes from DELIVERY_URL: change it there",
                )
            changes: dict[str, Any] = {}
            if name is not None and name != dest.name:
                changes["name"] = [dest.name, name]
                dest.name = name
            if url is not None and url != dest.url:
                changes["url"] = [dest.url, url]
                dest.url = url
            if enabled is not None and enabled != dest.enabled:
                changes["enabled"] = [dest.enabled, enabled]
                dest.enabled = enabled
            if changes:
                dest.updated_at = datetime.now(UTC)
                audit.record(
                    who.username,
                    "destination.update",
                    target=f"destination:{dest.name}",
                    client_ip=client_ip(request),
                    detail=changes,
                    session=session,
                )
            session.flush()
            return destination_json(dest, _counts(session, [dest.id])[dest.id])
    except IntegrityError:
        raise ApiError(409, "conflict", f"a destination named {name!r} exists already") from None


def rotate_secret(request: flask.Request, dest_id: str) -> Any:
    who = require(request)  # admins only
    params.query(request, set())
    data = params.json_body(request, {"overlap_seconds", "secret"})
    overlap = params.body_int(data, "overlap_seconds", 0, MAX_OVERLAP_SECONDS)
    overlap = DEFAULT_OVERLAP_SECONDS if overlap is None else overlap
    new_secret = _secret(data.get("secret"))
    with unit_of_work() as session:
        dest = _get(session, dest_id, lock=True)
        if dest.from_config:
            raise ApiError(
                409,
                "managed_by_configuration",
                "this destination's secret is DELIVERY_SECRET: rotate it in the configuration",
            )
        if new_secret == dest.secret:
            raise ApiError(422, "validation_error", "the new secret is the current one")
        now = datetime.now(UTC)
        if overlap > 0:
            dest.previous_secret = dest.secret
            dest.previous_secret_expires_at = now + timedelta(seconds=overlap)
        else:
            dest.previous_secret = None
            dest.previous_secret_expires_at = None
        dest.secret = new_secret
        dest.updated_at = now
        audit.record(
            who.username,
            "destination.rotate_secret",
            target=f"destination:{dest.name}",
            client_ip=client_ip(request),
            detail={"overlap_seconds": overlap},
            session=session,
        )
        session.flush()
        body = destination_json(dest, _counts(session, [dest.id])[dest.id])
    body["secret"] = new_secret  # shown this once
    return body, 200, {"Cache-Control": "no-store"}


def send_test(request: flask.Request, dest_id: str) -> Any:
    """Send one signed test event now and report what the destination answered."""
    who = require(request, *OPERATORS)
    params.query(request, set())
    params.json_body(request, set())
    with unit_of_work() as session:
        dest = _get(session, dest_id)
        url, name, secrets = dest.url, dest.name, signing_secrets(dest)
        did, from_config = dest.id, dest.from_config
    policy = destination_policy(from_config)
    msg_id = f"msg_test_{uuid.uuid4().hex}"
    payload = {
        "type": "test",
        "destination": {"id": str(did), "name": name},
        "sent_at": datetime.now(UTC).isoformat(),
        "message": "A test event from Call Downloader: no call is attached.",
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = sign_headers(msg_id, body, secrets)
    outcome = post_webhook(
        url, body, headers, timeout=get_settings().delivery_timeout_seconds, policy=policy
    )
    ok = outcome.outcome == "delivered"
    shows_body = from_config or _allowlisted(url, policy)
    audit.record(
        who.username,
        "destination.test",
        target=f"destination:{name}",
        client_ip=client_ip(request),
        detail={"webhook_id": msg_id, "status_code": outcome.status_code, "ok": ok},
    )
    return {
        "ok": ok,
        "webhook_id": msg_id,
        "status_code": outcome.status_code,
        "latency_ms": round(outcome.latency_ms, 1),
        "response_excerpt": outcome.excerpt if shows_body else None,
        "error": outcome.error,
        "signatures": len(secrets),
    }


def _allowlisted(url: str, policy: Policy) -> bool:
    """Is `url` reached through DESTINATION_URL_ALLOWLIST (a host its admins vouched for)?"""
    try:
        return bool(policy.allowlisted(check_url(url, policy=policy)))
    except TargetError:
        return False
