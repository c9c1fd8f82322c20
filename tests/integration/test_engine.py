"""The PostgreSQL engine's connection settings, seen by a real connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from call_downloader.db.engine import build_engine


def test_connections_give_up_on_an_unreachable_host_in_seconds(database_url):
    engine = build_engine(database_url)
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        seen.update(params)

    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    # libpq's connect_timeout: a black-holed address fails the attempt instead of hanging a
    # request (or a function's warm-up and /readyz) for the operating system's TCP timeout.
    assert seen["connect_timeout"] == 10
    assert engine.pool._pre_ping  # a restarted PostgreSQL costs a reconnect, not an error
