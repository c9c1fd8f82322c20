"""Shared fixtures. Integration tests get their own PostgreSQL database, Redis key namespace and
RabbitMQ exchange/queue names, so test runs (and parallel sessions) never see each other."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

RUN_ID = uuid.uuid4().hex[:8]
TEST_DB = f"cd_test_{RUN_ID}"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB

# Every test process starts from known settings; nothing from the developer's shell leaks in.
BASE_ENV = {
    "DATABASE_URL": TEST_DB_URL,
    "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "RABBITMQ_URL": os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    "EVENT_NAMESPACE": f"cdtest_{RUN_ID}",
    "JWT_SECRET": f"test-secret-{RUN_ID}-{uuid.uuid4().hex}",  # at least 32 bytes
    "ADMIN_USERNAME": "admin",
    "ADMIN_PASSWORD": "admin-password-123",
    "DELIVERY_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "AI_URL": "",
    "DELIVERY_URL": "",
    "AI_RETRY_DELAYS": "0.2,0.2,0.2,0.2,0.2",
    "DELIVERY_RETRY_DELAYS": "0.2,0.2,0.2,0.2,0.2",
}
for _k, _v in BASE_ENV.items():
    os.environ[_k] = _v


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    from call_downloader.config import reset_settings
    from call_downloader.health import forget_verdict

    reset_settings()
    forget_verdict()  # /readyz caches its verdict for a few seconds
    yield
    reset_settings()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test run (dropped at the end)."""
    from call_downloader.db.migrate import upgrade

    upgrade(TEST_DB_URL, wait=30)
    yield TEST_DB_URL
    from call_downloader.db.engine import dispose_engine

    dispose_engine()
    from broker_cleanup import delete_namespace_queues

    delete_namespace_queues(BASE_ENV["EVENT_NAMESPACE"])
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[None]:
    """A clean database for one test: every table truncated afterwards."""
    from sqlalchemy import text

    from call_downloader.db.engine import dispose_engine, get_engine
    from call_downloader.db.models import Base

    yield
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    dispose_engine()
