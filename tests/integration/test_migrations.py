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


# -- expand/contract: which code may serve the schema -----------------------------------------


def _revisions() -> list[tuple[str, object]]:
    """(revision, module) from the first migration to the head."""
    from alembic.script import ScriptDirectory

    from call_downloader.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [(r.revision, r.module) for r in reversed(list(script.walk_revisions()))]


@pytest.fixture
def scratch_database():
    """A PostgreSQL database of its own (this test migrates it step by step)."""
    import os

    import psycopg

    base, test_db = os.environ["DATABASE_URL"].rsplit("/", 1)  # tests/conftest.py's
    name = f"{test_db}_expand"
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _serves(url: str, code_head: str) -> str | None:
    from call_downloader.db.engine import build_engine
    from call_downloader.db.migrate import schema_problem

    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            return schema_problem(conn, code_head)
    finally:
        engine.dispose()


def test_the_previous_release_stays_ready_after_the_migration_forward(scratch_database):
    """Each release's code (its head) against the schema migrated one step further: ready
    when that step is declared compatible, as every migration so far is (expand only)."""
    from call_downloader.db.migrate import upgrade

    revisions = _revisions()
    assert all(
        getattr(module, "compatible_with_previous_code", False) for _, module in revisions[1:]
    ), "a contract migration: the previous release goes unready once it runs (docs/deploy.md)"
    previous_head, head = revisions[-2][0], revisions[-1][0]
    upgrade(scratch_database, wait=10, revision=previous_head)
    assert _serves(scratch_database, previous_head) is None
    assert "behind" in (_serves(scratch_database, head) or "")  # new code waits for the migration

    upgrade(scratch_database, wait=10)  # the new release's migration Job
    assert _serves(scratch_database, head) is None
    for older, _ in revisions[:-1]:  # the previous release, and any before it (rollback)
        assert _serves(scratch_database, older) is None, older


def test_readiness_reports_a_schema_the_code_cannot_use(scratch_database, monkeypatch):
    from sqlalchemy import text

    from call_downloader import health
    from call_downloader.config import reset_settings
    from call_downloader.db.engine import build_engine, dispose_engine
    from call_downloader.db.migrate import upgrade

    upgrade(scratch_database, wait=10)
    monkeypatch.setenv("DATABASE_URL", scratch_database)
    reset_settings()
    dispose_engine()
    try:
        assert health.readiness()["database"] == "ok"
        # A contract migration ran (a newer release): this code is no longer listed.
        engine = build_engine(scratch_database)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_contract'"))
            conn.execute(text("DELETE FROM schema_compatibility"))
        engine.dispose()
        verdict = health.readiness()["database"]
        assert verdict.startswith("error") and "0099_contract" in verdict
    finally:
        dispose_engine()


def test_compatible_code_stops_at_a_contract_step():
    from types import SimpleNamespace

    from call_downloader.db.migrate import compatible_code

    def rev(name, down, compatible):
        return SimpleNamespace(
            revision=name,
            down_revision=down,
            module=SimpleNamespace(compatible_with_previous_code=compatible),
        )

    chain = {
        "1": rev("1", None, False),
        "2": rev("2", "1", True),
        "3": rev("3", "2", False),  # contract: code of "2" must not serve it
        "4": rev("4", "3", True),
    }
    script = SimpleNamespace(get_revision=chain.get)
    assert compatible_code(script, "4") == ["4", "3"]
    assert compatible_code(script, "2") == ["2", "1"]
    assert compatible_code(script, "1") == ["1"]
