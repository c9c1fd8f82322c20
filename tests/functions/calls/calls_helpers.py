"""Helpers of the calls function tests: users with tokens, and calls written straight into
the database in any state (a uniquely named module: `conftest` is ambiguous)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

BASE = "/api/v1"


@dataclass
class Person:
    id: uuid.UUID
    username: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(username: str, role: str, *, active: bool = True) -> Person:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User
    from call_downloader.security.tokens import start_session

    with unit_of_work() as session:
        user = User(id=uuid.uuid4(), username=username, role=role, active=active)
        session.add(user)
        session.flush()
        pair = start_session(session, user)
        return Person(user.id, username, role, pair.access_token)


def set_active(person: Person, active: bool) -> None:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User

    with unit_of_work() as session:
        session.get(User, person.id).active = active


def make_call(
    source: Person,
    *,
    status: str = "delivered",
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    audio: bytes = b"ID3" + bytes(range(256)) * 8,
    fmt: str = "mp3",
    received_at: datetime | None = None,
    duration: float | None = 12.5,
    stage_seconds: tuple[float, float, float] = (1.0, 4.0, 0.5),
    error: tuple[str, str] | None = None,
    reached: str | None = None,
) -> uuid.UUID:
    """A call as the pipeline would have left it in `status`, with its audio stored."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import AiResult, Call
    from call_downloader.storage.audio import ChunkWriter

    received = received_at or datetime.now(UTC) - timedelta(minutes=5)
    order = ["received", "analyzed", "processing", "processed", "delivered"]
    # How far the pipeline got (a failed call stopped somewhere: analyzed by default).
    reached = order.index(reached or (status if status in order else "analyzed"))
    analyzed = received + timedelta(seconds=stage_seconds[0]) if reached >= 1 else None
    processed = analyzed + timedelta(seconds=stage_seconds[1]) if reached >= 3 else None
    delivered = processed + timedelta(seconds=stage_seconds[2]) if reached >= 4 else None
    with unit_of_work() as session:
        call = Call(
            id=uuid.uuid4(),
            source_id=source.id,
            external_id=external_id,
            status=status,
            metadata_=metadata or {},
            filename=f"{external_id or 'call'}.{fmt}",
            size_bytes=len(audio),
            sha256=hashlib.sha256(audio).hexdigest(),
            format=fmt,
            duration_seconds=duration if reached >= 1 else None,
            received_at=received,
            analyzed_at=analyzed,
            processed_at=processed,
            delivered_at=delivered,
        )
        if error is not None:
            call.error_stage, call.error_reason = error
            call.error_detail = f"{error[1]} (test)"
        session.add(call)
        session.flush()
        writer = ChunkWriter(session, call.id)
        writer.write(audio)
        writer.close()
        if processed is not None:
            session.add(AiResult(call_id=call.id, version=1, result={"transcript": "hello"}))
            call.result_version = 1
        return call.id


def make_destination(name: str, url: str = "http://127.0.0.1:9/hook", **fields: Any) -> uuid.UUID:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Destination
    from call_downloader.net.webhooks import generate_secret

    with unit_of_work() as session:
        dest = Destination(
            id=uuid.uuid4(),
            name=name,
            url=url,
            secret=fields.pop("secret", generate_secret()),
            **fields,
        )
        session.add(dest)
        return dest.id


def make_delivery(
    call_id: uuid.UUID,
    destination_id: uuid.UUID,
    *,
    status: str = "dead",
    attempts: int = 5,
    updated_at: datetime | None = None,
) -> str:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Delivery

    delivery_id = f"msg_{uuid.uuid4().hex}"
    with unit_of_work() as session:
        session.add(
            Delivery(
                id=delivery_id,
                call_id=call_id,
                destination_id=destination_id,
                result_version=1,
                status=status,
                attempts=attempts,
                last_status_code=503 if status == "dead" else 204,
                last_error="gave up after 5 attempts" if status == "dead" else None,
                updated_at=updated_at or datetime.now(UTC),
            )
        )
    return delivery_id


# Hostile strings for every query parameter: none may give a 5xx.
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE calls; --",
    '" OR 1=1 --',
    "1) UNION SELECT password_hash FROM users --",
    "received_at; DELETE FROM calls",
    "%' AND pg_sleep(5) --",
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "\u0000",
    "\x01\x02",
    "a" * 5000,
    "-received_at,id",
    '{"$gt": ""}',
    "NaN",
    "9" * 40,
    "2026-13-45T99:99:99Z",
    "\\",
    "%%%%",
    "_",
    "\U0001f600",
]
