"""Migrations as a start step: wait for the database, then `alembic upgrade head`; and which
code may serve the schema (expand/contract).

A migration declares `compatible_with_previous_code` (expand: the previous revision's code
still works on the new schema). After upgrading, the table `schema_compatibility` lists the
code revisions that may serve the schema: the head and, walking back, each down revision of
a compatible step. Readiness (`schema_problem`) accepts a schema at the code's own head, or
ahead of it when the code's head is listed: so the previous release stays ready while a
rolling upgrade replaces it, and after `helm rollback`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, OperationalError

from call_downloader.config import get_settings, sqlalchemy_url
from call_downloader.db.engine import build_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url",
        sqlalchemy_url(url or get_settings().database_url).replace("%", "%%"),
    )
    return cfg


def wait_for_database(url: str, timeout: float = 60.0) -> None:
    engine = build_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for the database")
                time.sleep(1.0)
    finally:
        engine.dispose()


def _retry(step: Callable[[], None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            step()
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the database server")
            time.sleep(1.0)


def ensure_database_exists(url: str) -> None:
    """Create the PostgreSQL database named in the URL when missing (local runs and tests)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(sqlalchemy_url(url))
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    admin = build_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def upgrade(url: str | None = None, wait: float = 60.0, revision: str = "head") -> None:
    url = url or get_settings().database_url
    _retry(lambda: ensure_database_exists(url), wait)  # the server may still be starting
    wait_for_database(url, wait)
    cfg = alembic_config(url)
    command.upgrade(cfg, revision)
    record_compatible_code(url, cfg)


def compatible_code(script: ScriptDirectory, revision: str) -> list[str]:
    """The code revisions that may serve a schema at `revision`: itself, then each down
    revision as long as the step above it is declared compatible with the previous code."""
    found: list[str] = []
    step = script.get_revision(revision)
    while step is not None:
        found.append(step.revision)
        if not getattr(step.module, "compatible_with_previous_code", False):
            break
        down = step.down_revision
        if not isinstance(down, str):  # the first revision, or a merge: stop there
            break
        step = script.get_revision(down)
    return found


def record_compatible_code(url: str, cfg: Config | None = None) -> None:
    """Rewrite `schema_compatibility` for the revision the schema is at."""
    script = ScriptDirectory.from_config(cfg or alembic_config(url))
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current is None or not _has_table(conn, "schema_compatibility"):
                return  # migrated to a revision before the table existed
            conn.execute(text("DELETE FROM schema_compatibility"))
            for code_revision in compatible_code(script, current):
                conn.execute(
                    text("INSERT INTO schema_compatibility (code_revision) VALUES (:r)"),
                    {"r": code_revision},
                )
    finally:
        engine.dispose()


def _has_table(conn: Connection, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(conn).has_table(name)


def schema_problem(conn: Connection, code_head: str) -> str | None:
    """Why the schema cannot serve code whose newest migration is `code_head` (None: it can):
    it must be at that head, or ahead of it with the code's head declared compatible."""
    version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if version == code_head:
        return None
    try:
        listed = conn.execute(
            text("SELECT 1 FROM schema_compatibility WHERE code_revision = :r"), {"r": code_head}
        ).scalar()
    except DBAPIError:
        listed = None  # no such table: a schema older than this code
    if listed:
        return None
    return (
        f"schema at {version}, code expects {code_head}: the schema is behind the code "
        "(the migration has not run) or ahead of it by a change not declared compatible"
    )
