"""The PostgreSQL engine's connection settings, seen by a real connection."""

from __future__ import annotations

import time
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


def test_a_pooled_connection_the_server_closed_is_replaced_before_use(database_url):
    """What a PostgreSQL restart does to every pooled connection, done to one: its backend
    ends. The next transaction gets a fresh connection instead of an error."""
    engine = build_engine(database_url)
    admin = build_engine(database_url)
    try:
        with engine.connect() as conn:
            first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert engine.pool.checkedin() == 1  # idle in the pool now
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
            for _ in range(200):  # the backend ends (and closes its socket) asynchronously
                gone = not conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": first_pid},
                ).scalar()
                conn.commit()  # pg_stat_activity is a snapshot per transaction
                if gone:
                    break
                time.sleep(0.05)
            assert gone
        with engine.begin() as conn:
            second_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert second_pid != first_pid
    finally:
        engine.dispose()
        admin.dispose()


def test_a_lone_read_runs_outside_a_transaction_and_leaves_the_pool_transactional(db):
    from sqlalchemy import bindparam, select

    from call_downloader.db.engine import get_engine, lone_read, transaction
    from call_downloader.db.models import ProcessedEvent, utcnow

    table = ProcessedEvent.__table__
    query = select(table.c.event_id).where(table.c.event_id == bindparam("event_id"))
    autocommit: list[bool] = []

    def note(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("SET plan_cache_mode"):  # the hot path's, on first use
            autocommit.append(conn.connection.driver_connection.autocommit)

    event.listen(get_engine(), "before_cursor_execute", note)
    try:
        assert lone_read(query, {"event_id": "nope"}) is None
        # psycopg in autocommit sends no BEGIN (and no COMMIT): the read is its own transaction.
        assert autocommit == [True]
        with transaction() as tx:
            tx.execute(query, {"event_id": "nope"})
        assert autocommit == [True, False]
    finally:
        event.remove(get_engine(), "before_cursor_execute", note)
    assert get_engine().pool.checkedin() >= 1
    # The connection is back in the pool in transactional mode: a transaction that fails
    # after a write leaves nothing behind.
    row = {"consumer": "t", "processed_at": utcnow()}
    try:
        with transaction() as tx:
            tx.execute(table.insert(), {**row, "event_id": "rolled-back"})
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert lone_read(query, {"event_id": "rolled-back"}) is None
    with transaction() as tx:
        tx.execute(table.insert(), {**row, "event_id": "kept"})
    assert lone_read(query, {"event_id": "kept"}) == ("kept",)


def _plan_mode_in_transaction() -> str:
    from call_downloader.db.engine import transaction

    with transaction() as tx:
        return tx.execute(text("SHOW plan_cache_mode")).scalar()


def _plan_mode_in_unit_of_work() -> str:
    from call_downloader.db.engine import unit_of_work

    with unit_of_work() as session:
        return session.execute(text("SHOW plan_cache_mode")).scalar()


def test_the_hot_path_plans_generically_and_operators_queries_do_not(database_url):
    """One pooled connection (the pool hands out the one returned last) passed back and forth
    between the hot path's transactions and operators' units of work."""
    from call_downloader.db.engine import dispose_engine, get_engine, lone_read, transaction

    dispose_engine()
    try:
        assert _plan_mode_in_transaction() == "force_generic_plan"
        assert _plan_mode_in_transaction() == "force_generic_plan"
        assert _plan_mode_in_unit_of_work() == "auto"
        assert lone_read(text("SHOW plan_cache_mode")) == ("force_generic_plan",)
        assert _plan_mode_in_unit_of_work() == "auto"
        # A rollback undoes a SET made in its transaction: the next one sets it again.
        try:
            with transaction() as tx:
                assert tx.execute(text("SHOW plan_cache_mode")).scalar() == "force_generic_plan"
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert _plan_mode_in_unit_of_work() == "auto"
        assert _plan_mode_in_transaction() == "force_generic_plan"
        assert get_engine().pool.checkedout() == 0
        with get_engine().connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold == 0
    finally:
        dispose_engine()


def test_generic_plans_can_be_switched_off_for_a_pooler(database_url, monkeypatch):
    from call_downloader.config import reset_settings
    from call_downloader.db.engine import dispose_engine, get_engine

    monkeypatch.setenv("DATABASE_GENERIC_PLANS", "false")
    reset_settings()
    dispose_engine()
    try:
        assert _plan_mode_in_transaction() == "auto"
        assert _plan_mode_in_unit_of_work() == "auto"
        with get_engine().connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold == 5  # psycopg's own
    finally:
        dispose_engine()
