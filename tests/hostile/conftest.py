"""Hostile-input fixtures: the HTTP functions as functions-framework test clients on the real
PostgreSQL and Redis, users of each role, and the footprint check (no partial rows, blobs or
cache entries left behind by a refused request).

Nothing here may connect to a non-loopback address: `no_outbound` replaces the pinned
connection of the downloader and the webhook sender with one that refuses anything but
127.0.0.0/8 and ::1, and records what was attempted.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOOTPRINT_TABLES = (
    "calls",
    "audio_chunks",
    "outbox",
    "ai_results",
    "deliveries",
    "delivery_attempts",
    "timeline",
    "destinations",
    "users",
    "api_keys",
    "processed_events",
)


def function_client(name: str, target: str) -> Any:
    import functions_framework

    source = ROOT / "functions" / name / "main.py"
    return functions_framework.create_app(target=target, source=str(source)).test_client()


@pytest.fixture
def clients(db) -> Iterator[dict[str, Any]]:
    from call_downloader.security import api, throttle
    from call_downloader.storage.redis_client import reset_redis

    reset_redis()
    api._bootstrapped = False  # each test's database starts empty
    throttle._default = None
    yield {
        "ingest": function_client("ingest", "ingest"),
        "calls": function_client("calls", "calls"),
        "auth": function_client("auth", "auth"),
    }
    _drop_namespace_keys()
    reset_redis()


def _drop_namespace_keys() -> None:
    from call_downloader.storage.redis_client import get_redis, key

    client = get_redis()
    for k in client.scan_iter(key("*")):
        client.delete(k)


class Person:
    def __init__(self, user_id: uuid.UUID, role: str, token: str) -> None:
        self.id, self.role, self.token = user_id, role, token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_person(role: str) -> Person:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User
    from call_downloader.security.tokens import start_session

    with unit_of_work() as session:
        user = User(id=uuid.uuid4(), username=f"{role}-{uuid.uuid4().hex[:6]}", role=role)
        session.add(user)
        session.flush()
        pair = start_session(session, user)
        return Person(user.id, role, pair.access_token)


@pytest.fixture
def people(clients) -> dict[str, Person]:
    return {role: make_person(role) for role in ("admin", "operator", "viewer", "source")}


def footprint() -> dict[str, int]:
    """Row counts of everything a request could leave behind, plus the namespace's audio
    cache keys in Redis."""
    from sqlalchemy import text

    from call_downloader.db.engine import get_engine
    from call_downloader.storage.redis_client import get_redis, key

    with get_engine().connect() as conn:
        counts = {
            t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0)
            for t in FOOTPRINT_TABLES
        }
    counts["redis_audio_keys"] = sum(1 for _ in get_redis().scan_iter(key("audio", "*")))
    return counts


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@pytest.fixture
def no_outbound(monkeypatch) -> list[str]:
    """Refuse (and record) any pinned connection that is not to loopback."""
    from call_downloader.net import download, ssrf, transport, webhooks

    attempted: list[str] = []
    real = transport.send_pinned

    def guarded(client, method, target, *args, **kwargs):
        for address in target.addresses:
            if not is_loopback(str(address)):
                attempted.append(f"{method} {target.host} -> {address}")
                raise AssertionError(f"tried to connect to {address}")
        return real(client, method, target, *args, **kwargs)

    def no_dns(host, port):
        # A name lookup would query this machine's (non-loopback) DNS server: never in tests.
        attempted.append(f"resolve {host}")
        raise OSError("name resolution is disabled in hostile-input tests")

    for module in (transport, download, webhooks):
        if hasattr(module, "send_pinned"):
            monkeypatch.setattr(module, "send_pinned", guarded)
    monkeypatch.setattr(ssrf, "default_resolver", no_dns)
    return attempted


def assert_clear_refusal(response: Any, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of `statuses` when given) with the API's JSON error shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.get_json())
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.get_data()
    assert body["error"].get("code") and body["error"].get("message"), body
    return body
