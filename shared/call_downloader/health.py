"""Readiness: PostgreSQL (with a schema this code can use: at its head, or ahead and declared
compatible), Redis and RabbitMQ answer."""

from __future__ import annotations

import threading
from collections.abc import Callable

_head_lock = threading.Lock()
_head: str | None = None


NOT_USED = "not used (embedded mode)"


class _NotUsed(Exception):
    pass


def _check(fn: Callable[[], None]) -> str:
    try:
        fn()
        return "ok"
    except _NotUsed:
        return NOT_USED
    except Exception as exc:  # readiness reports, it never raises
        return f"error: {type(exc).__name__}: {str(exc)[:120]}"


def migration_head() -> str:
    """The newest Alembic revision this code expects (read from the scripts once)."""
    global _head
    with _head_lock:
        if _head is None:
            from alembic.script import ScriptDirectory

            from call_downloader.db.migrate import alembic_config

            _head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert _head is not None
    return _head


def _database() -> None:
    from call_downloader.db.engine import get_engine
    from call_downloader.db.migrate import schema_problem

    with get_engine().connect() as conn:
        # Traffic waits until the migration step has run (Knative holds the revision); a
        # schema ahead serves the previous code while its migrations are declared compatible.
        problem = schema_problem(conn, migration_head())
    if problem:
        raise RuntimeError(problem)


def _redis() -> None:
    from call_downloader.config import get_settings
    from call_downloader.storage.redis_client import get_redis

    if get_settings().cache == "none":
        raise _NotUsed  # embedded mode without a cache
    get_redis().ping()


def _rabbitmq() -> None:
    from call_downloader.config import get_settings
    from call_downloader.events.broker import check_connection

    if get_settings().event_transport == "database":
        raise _NotUsed  # embedded mode: the database carries the events

    check_connection()


def is_ready(checks: dict[str, str]) -> bool:
    return all(v in ("ok", NOT_USED) for v in checks.values())


def readiness() -> dict[str, str]:
    return {"database": _check(_database), "redis": _check(_redis), "rabbitmq": _check(_rabbitmq)}
