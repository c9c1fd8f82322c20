"""Helpers of the hostile-input tests (a uniquely named module: `conftest` is ambiguous
when several test folders are collected together)."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from pathlib import Path
from typing import Any

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


def assert_clear_refusal(response: Any, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of `statuses` when given) with the API's JSON error shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.get_json())
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.get_data()
    assert body["error"].get("code") and body["error"].get("message"), body
    return body


def exchange(port: int, head: bytes, body_parts: list[bytes], *, close_write: bool) -> bytes:
    """Send a request piece by piece; return whatever the server answered (maybe nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(head)
            for piece in body_parts:
                sock.sendall(piece)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close while we still send
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])
