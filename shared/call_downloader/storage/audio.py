"""Audio kept in PostgreSQL as bounded chunks, with Redis as a short-lived cache.

Writes stream chunk by chunk inside the caller's transaction; reads stream chunk by chunk.
Memory stays at about one chunk whatever the recording's size. The cache only holds small
recordings and never fails a caller: Redis errors fall back to PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import DBAPIError

from call_downloader.config import get_settings
from call_downloader.db.engine import get_sessionmaker
from call_downloader.db.models import AudioChunk
from call_downloader.storage.redis_client import get_redis, key

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
CACHE_MAX_BYTES = 16 << 20


AUDIO_CHUNKS = AudioChunk.__table__
_INSERT_CHUNK = insert(AUDIO_CHUNKS)  # built once: a statement computes its cache key once


class ChunkWriter:
    """Buffers incoming bytes into CHUNK_BYTES rows of `audio_chunks` (same transaction).

    `executor`: a `db.engine.Transaction` (the upload) or an ORM Session. Rows are plain Core
    INSERTs either way. `before_first_row`, if given, runs just before the first row is
    written (ingest inserts the call row there, which the chunks reference): a recording
    smaller than one row is only written by `close`, so its call row can be inserted once,
    complete, after the whole body was read.

    On PostgreSQL, once a recording is larger than one row, a helper thread inserts the rows
    on the transaction's own connection while the caller reads, parses and hashes the next
    MiB (at most two rows wait: memory stays flat). The caller must not use the transaction
    between the first row and `close` (ingest does not). Use the writer as a context manager
    (or call `close`): leaving the block stops the helper before the caller's transaction can
    commit or roll back — waiting for the row it is inserting and dropping the queued ones when
    the block raised — so no row is ever written outside the transaction. `close` waits for
    every row and re-raises a failed insert. Elsewhere (SQLite) rows are inserted inline.
    """

    _INSERT = "INSERT INTO audio_chunks (call_id, seq, data) VALUES (%s, %s, %s)"

    def __init__(
        self,
        executor: Any,
        call_id: uuid.UUID,
        before_first_row: Callable[[], None] | None = None,
    ) -> None:
        self.executor = executor
        self.call_id = call_id
        self.seq = 0
        self._before_first_row = before_first_row
        self._buffer = bytearray()
        self._rows: queue.Queue[tuple[int, bytes] | None] | None = None
        self._thread: threading.Thread | None = None
        self._helper_tried = False
        self._abandoned = False  # the caller gave up: the helper skips what is queued
        self._error: BaseException | None = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stop_helper(abandon=exc_type is not None)

    @property
    def started(self) -> bool:
        """Has a row been written (or handed to the helper)? Until then only memory holds
        the bytes, and the transaction is free for other statements."""
        return self.seq > 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            with memoryview(self._buffer) as view:  # one copy per row, not two
                chunk = bytes(view[:CHUNK_BYTES])
            del self._buffer[:CHUNK_BYTES]
            if self.seq == 0 and self._before_first_row is not None:
                self._before_first_row()  # before the helper takes the connection
            if not self._helper_tried:
                self._helper_tried = True
                self._start_helper()
            self._flush(chunk)

    def close(self) -> None:
        if self._buffer:
            if self.seq == 0 and self._before_first_row is not None:
                self._before_first_row()
            self._flush(bytes(self._buffer))
            self._buffer.clear()
        self._stop_helper(abandon=False)

    def _flush(self, chunk: bytes) -> None:
        if self._rows is not None:
            if self._error is not None:
                self._stop_helper(abandon=True)
                raise self._error
            self._rows.put((self.seq, chunk))
        else:
            self.executor.execute(
                _INSERT_CHUNK, {"call_id": self.call_id, "seq": self.seq, "data": chunk}
            )
        self.seq += 1

    # -- the helper thread (PostgreSQL) ------------------------------------------------------
    def _start_helper(self) -> None:
        conn = _connection_of(self.executor)  # the transaction's connection (it has begun)
        if conn.dialect.name != "postgresql":
            return
        self._rows = queue.Queue(maxsize=2)
        self._thread = threading.Thread(
            target=self._insert_rows,
            args=(conn.connection.driver_connection,),
            name="audio-chunk-writer",
            daemon=True,
        )
        self._thread.start()

    def _insert_rows(self, dbapi_conn: Any) -> None:
        rows = self._rows
        assert rows is not None
        try:
            with dbapi_conn.cursor() as cursor:
                while (item := rows.get()) is not None:
                    if not self._abandoned:
                        cursor.execute(self._INSERT, (self.call_id, item[0], item[1]))
        except BaseException as exc:
            self._error = DBAPIError.instance(
                self._INSERT, None, exc, type(exc) if isinstance(exc, Exception) else Exception
            )
            while rows.get() is not None:  # keep taking rows so the writer never blocks
                pass

    def _stop_helper(self, abandon: bool) -> None:
        """Wait for the helper to finish (`abandon`: after the row it is inserting) and
        re-raise its failure unless abandoning."""
        if self._thread is None or self._rows is None:
            return
        self._abandoned = self._abandoned or abandon
        self._rows.put(None)
        self._thread.join()
        self._thread = None
        self._rows = None
        if not abandon and self._error is not None:
            raise self._error


def _connection_of(executor: Any) -> Connection:
    """The Connection under a `db.engine.Transaction` or an ORM Session."""
    conn = getattr(executor, "conn", None)
    return conn if isinstance(conn, Connection) else executor.connection()


def iter_chunks_from_db(call_id: uuid.UUID) -> Iterator[bytes]:
    """Stream the stored chunks, one query per chunk, so memory stays at one chunk."""
    session = get_sessionmaker()()
    try:
        seq = 0
        while True:
            data = session.execute(
                select(AudioChunk.data).where(AudioChunk.call_id == call_id, AudioChunk.seq == seq)
            ).scalar()
            if data is None:
                return
            yield bytes(data)
            seq += 1
    finally:
        session.close()


def _cache_key(call_id: uuid.UUID) -> str:
    return key("audio", str(call_id))


def _cache_enabled() -> bool:
    return get_settings().cache != "none"


def cache_put(call_id: uuid.UUID, data: bytes) -> None:
    if len(data) > CACHE_MAX_BYTES or not _cache_enabled():
        return
    try:
        get_redis().set(_cache_key(call_id), data, ex=get_settings().audio_cache_ttl_seconds)
    except Exception as exc:  # cache only: never fails the caller
        log.info("audio cache unavailable on write: %r", exc)


def cache_get(call_id: uuid.UUID) -> bytes | None:
    if not _cache_enabled():
        return None
    try:
        value = get_redis().get(_cache_key(call_id))
    except Exception as exc:
        log.info("audio cache unavailable on read: %r", exc)
        return None
    return bytes(value) if value is not None else None


def cache_drop(call_id: uuid.UUID) -> None:
    if not _cache_enabled():
        return
    try:
        get_redis().delete(_cache_key(call_id))
    except Exception:  # expires by itself anyway
        pass


def iter_audio(call_id: uuid.UUID) -> Iterator[bytes]:
    cached = cache_get(call_id)
    if cached is not None:
        for start in range(0, len(cached), CHUNK_BYTES):
            yield cached[start : start + CHUNK_BYTES]
        return
    yield from iter_chunks_from_db(call_id)


@contextmanager
def spooled_audio(call_id: uuid.UUID, suffix: str = "") -> Iterator[str]:
    """The recording as a temporary file (audio probing and multipart upload need one)."""
    fd, path = tempfile.mkstemp(prefix="cd-audio-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter_audio(call_id):
                out.write(chunk)
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
