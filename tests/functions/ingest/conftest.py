"""The ingest function (and the calls function, to read back what it stored) served by
functions-framework's Flask apps on the real PostgreSQL (fixture `db`) and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Person:
    id: uuid.UUID
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _function_client(name: str) -> Any:
    import functions_framework

    source = ROOT / "functions" / name / "main.py"
    return functions_framework.create_app(target=name, source=str(source)).test_client()


def _drop_namespace_keys() -> None:
    from call_downloader.storage.redis_client import get_redis, key

    client = get_redis()
    for k in client.scan_iter(key("*")):
        client.delete(k)


@pytest.fixture
def clients(db) -> Iterator[dict[str, Any]]:
    from call_downloader.storage.redis_client import reset_redis

    reset_redis()
    yield {"ingest": _function_client("ingest"), "calls": _function_client("calls")}
    _drop_namespace_keys()
    reset_redis()


@pytest.fixture
def make_person(clients) -> Callable[[str], Person]:
    """A user of `role` with a session and its access token (no bcrypt)."""

    def make(role: str) -> Person:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.db.models import User
        from call_downloader.security.tokens import start_session

        with unit_of_work() as session:
            user = User(id=uuid.uuid4(), username=f"{role}-{uuid.uuid4().hex[:6]}", role=role)
            session.add(user)
            session.flush()
            return Person(user.id, role, start_session(session, user).access_token)

    return make


@pytest.fixture
def source(make_person) -> Person:
    return make_person("source")


@pytest.fixture
def admin(make_person) -> Person:
    return make_person("admin")
