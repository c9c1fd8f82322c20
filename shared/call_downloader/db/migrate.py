"""Migrations as a start step: wait for the database, then `alembic upgrade head`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

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


def upgrade(url: str | None = None, wait: float = 60.0) -> None:
    url = url or get_settings().database_url
    _retry(lambda: ensure_database_exists(url), wait)  # the server may still be starting
    wait_for_database(url, wait)
    command.upgrade(alembic_config(url), "head")
