"""The database engine and the unit of work.

The engine is built once per process, on first use (never at import: cold start matters on
Knative), and shared by every thread.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, Row, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from call_downloader.config import get_settings, sqlalchemy_url

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None


def build_engine(url: str) -> Engine:
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        # Kept open: one per thread that may hold a transaction at once (`make run`: three
        # dispatcher functions x DISPATCHER_CONCURRENCY, the relay and the request threads).
        # With 10 kept, the pipeline bench opened and closed ~10 overflow connections a second,
        # each a PostgreSQL backend started and stopped. The ceiling is unchanged (30).
        pool_size=24,
        max_overflow=6,
        pool_recycle=1800,
        # The connection returned last is handed out first: the work concentrates on as few
        # connections as it needs, whose prepared statements and plans are warm (first in,
        # first out spread every statement over all 24, each planned anew on each).
        pool_use_lifo=True,
        connect_args={
            # An unreachable host fails a connection attempt in seconds (503, a retried
            # event) instead of holding the request, or a function's warm-up and /readyz, for
            # minutes.
            "connect_timeout": 10,
            **_plan_args(),
        },
    )
    # Instead of pool_pre_ping (a SELECT 1 round trip before every transaction).
    event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _plan_args() -> dict[str, Any]:
    """Planning was ~40 % of PostgreSQL's time per statement in the pipeline bench
    (pg_stat_statements: as many plans as executions): psycopg prepares a statement at its
    fifth execution on a connection, PostgreSQL then plans it anew for five more, and 48
    pooled connections each had to get there. Statements are prepared at first use; the hot
    path asks for generic plans (`_plan_mode`). DATABASE_GENERIC_PLANS=false: both defaults."""
    if not get_settings().database_generic_plans:
        return {}
    return {"prepare_threshold": 0}


_PLAN_MODE = "calldl_plan_cache_mode"  # the pooled connection's plan_cache_mode, as last set
GENERIC_PLANS = "force_generic_plan"  # the hot path: a fixed set of key lookups and inserts
CUSTOM_PLANS = "auto"  # PostgreSQL's default: operators' queries, whose filters are skewed


def _plan_mode(conn: Connection, mode: str) -> dict[str, Any] | None:
    """Put the connection's `plan_cache_mode` to `mode` unless it is there already: one SET,
    only when a connection passes between the hot path and an operator's query. A generic
    plan per statement and connection spares the hot path its planning; an operator's list
    of failed calls keeps its custom plan (a generic one may scan all calls for the rare
    status). Returns the pooled connection's info when it ran a SET, which a rollback undoes:
    the caller then marks the setting unknown (`_forget_plan_mode`)."""
    if conn.dialect.name != "postgresql" or not get_settings().database_generic_plans:
        return None
    info = conn.info  # the pooled connection's: kept across checkouts, cleared on reconnect
    if info.get(_PLAN_MODE, CUSTOM_PLANS) == mode:
        return None
    conn.exec_driver_sql(f"SET plan_cache_mode = {mode}")
    info[_PLAN_MODE] = mode
    return info


def _forget_plan_mode(info: dict[str, Any] | None) -> None:
    """After a rollback (or a failed commit) the server's setting is unknown: set anew next
    time."""
    if info is not None:
        info[_PLAN_MODE] = "unknown"


def _drop_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A restarted (or terminated) PostgreSQL backend announces it: it sends a FATAL message
    and closes the socket. An idle pooled connection has nothing else to read (none of them
    LISTENs), so a readable socket means it is dead: the pool replaces it before use, and a
    restarted PostgreSQL costs a reconnect, not an error. (An unannounced loss, e.g. a network
    partition, surfaces as an error on first use: the request answers 5xx, the event is
    retried.)"""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the pooled connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("PostgreSQL closed this pooled connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes writers queue
    # instead of failing; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=60000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def get_engine() -> Engine:
    global _engine, _sessionmaker
    if _engine is None:
        with _lock:
            if _engine is None:
                engine = build_engine(get_settings().database_url)
                _sessionmaker = sessionmaker(engine, expire_on_commit=False)
                _engine = engine
    return _engine


def get_sessionmaker() -> sessionmaker[Session]:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


def dispose_engine() -> None:
    """Drop the process's engine (tests switch databases; forked workers must not share it)."""
    global _engine, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _sessionmaker = None


class Transaction:
    """One Core transaction on one pooled connection, plus work to run once it commits.

    The hot paths (the pipeline's stages, the upload) use this instead of an ORM session:
    the session's identity map and unit-of-work bookkeeping cost more CPU per call than the
    statements themselves (`make bench`, py-spy)."""

    __slots__ = ("conn", "_after")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._after: list[Callable[[], None]] = []

    def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        return self.conn.execute(statement, parameters)

    @property
    def dialect_name(self) -> str:
        return self.conn.dialect.name

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)


@contextmanager
def transaction() -> Iterator[Transaction]:
    """One Core transaction: commit on success, roll back on any exception (which propagates);
    then the `after_commit` work, whose failures never undo what committed."""
    switched = None
    try:
        with get_engine().begin() as conn:
            switched = _plan_mode(conn, GENERIC_PLANS)
            tx = Transaction(conn)
            yield tx
    except BaseException:
        _forget_plan_mode(switched)
        raise
    for fn in tx._after:
        try:
            fn()
        except Exception:  # a metric must never break a committed transaction
            pass


_autocommit: tuple[Engine, Engine] | None = None  # (the engine, its autocommit view)


def lone_read(statement: Any, parameters: Any = None) -> Row[Any] | None:
    """The first row of one read run outside any transaction (autocommit): one round trip
    instead of three (BEGIN, the read, COMMIT), for a look that decides whether there is work
    at all. The pooled connection goes back to the pool in its usual mode."""
    global _autocommit
    base = get_engine()
    if _autocommit is None or _autocommit[0] is not base:  # none yet, or the engine was rebuilt
        _autocommit = (base, base.execution_options(isolation_level="AUTOCOMMIT"))
    with _autocommit[1].connect() as conn:
        _plan_mode(conn, GENERIC_PLANS)  # in autocommit: it holds at once
        return conn.execute(statement, parameters).first()


def dialect_name(executor: Any) -> str:
    """The database dialect of a Transaction or an ORM Session."""
    if isinstance(executor, Transaction):
        return executor.dialect_name
    return str(executor.get_bind().dialect.name)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception (which propagates)."""
    session = get_sessionmaker()()
    switched = None
    try:
        switched = _plan_mode(session.connection(), CUSTOM_PLANS)
        yield session
        session.commit()
    except BaseException:
        _forget_plan_mode(switched)
        session.rollback()
        raise
    finally:
        session.close()
