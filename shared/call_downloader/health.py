"""Readiness: PostgreSQL, Redis and RabbitMQ each answer (SPEC 3.5)."""

from __future__ import annotations

from sqlalchemy import text


def _check(fn) -> str:  # type: ignore[no-untyped-def]
    try:
        fn()
        return "ok"
    except Exception as exc:  # readiness reports, it never raises
        return f"error: {type(exc).__name__}"


def _database() -> None:
    from call_downloader.db.engine import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis() -> None:
    from call_downloader.storage.redis_client import get_redis

    get_redis().ping()


def _rabbitmq() -> None:
    from call_downloader.events.broker import check_connection

    check_connection()


def readiness() -> dict[str, str]:
    return {"database": _check(_database), "redis": _check(_redis), "rabbitmq": _check(_rabbitmq)}
