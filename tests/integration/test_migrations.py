"""The Alembic migrations build exactly the models' schema, on PostgreSQL and on SQLite."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from call_downloader.config import sqlalchemy_url
from call_downloader.db.migrate import upgrade
from call_downloader.db.models import Base

pytestmark = pytest.mark.integration


def _drift(url: str) -> list:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_postgresql_schema_matches_the_models(database_url):
    assert _drift(database_url) == []


def test_sqlite_schema_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url, wait=5)
    upgrade(url, wait=5)  # idempotent: a second start changes nothing
    assert _drift(url) == []
