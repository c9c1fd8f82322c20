"""Readiness: PostgreSQL (with a schema this code can use: at its head, or ahead and declared
compatible), Redis and RabbitMQ answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

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


# /readyz is unauthenticated: its verdict is computed at most this often per process, so
# neither probes nor strangers make it open a broker connection per request.
VERDICT_SECONDS = 5.0
_verdict_lock = threading.Lock()
_verdicts: dict[tuple[str, ...], tuple[float, dict[str, str]]] = {}


def cached_readiness(extra: dict[str, Callable[[], str]] | None = None) -> dict[str, str]:
    """`readiness()` plus the `extra` checks (name -> "ok" or "error: ..."), computed again
    only once the last verdict is VERDICT_SECONDS old. A verdict of "not ready" is logged
    with its details when it is computed (anonymous callers see only the status)."""
    extra = extra or {}
    key = tuple(sorted(extra))
    with _verdict_lock:  # one computation at a time; the others take its verdict
        cached = _verdicts.get(key)
        if cached is not None and time.monotonic() - cached[0] < VERDICT_SECONDS:
            return cached[1]
        checks = readiness()
        checks.update({name: check() for name, check in extra.items()})
        _verdicts[key] = (time.monotonic(), checks)
    if not is_ready(checks):
        log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in checks.items()))
    return checks


def forget_verdict() -> None:
    """Drop the cached verdicts (tests)."""
    with _verdict_lock:
        _verdicts.clear()
