"""Audio kept in PostgreSQL as bounded chunks, with Redis as a short-lived cache.

Writes stream chunk by chunk inside the caller's transaction; reads stream chunk by chunk.
Memory stays at about one chunk whatever the recording's size. The cache only holds small
recordings and never fails a caller: Redis errors fall back to PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from call_downloader.config import get_settings
from call_downloader.db.engine import get_sessionmaker
from call_downloader.db.models import AudioChunk
from call_downloader.storage.redis_client import get_redis, key

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
CACHE_MAX_BYTES = 16 << 20


class ChunkWriter:
    """Buffers incoming bytes into CHUNK_BYTES rows of `audio_chunks` (same transaction)."""

    def __init__(self, session: Session, call_id: uuid.UUID) -> None:
        self.session = session
        self.call_id = call_id
        self.seq = 0
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            self._flush(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    def close(self) -> None:
        if self._buffer:
            self._flush(bytes(self._buffer))
            self._buffer.clear()

    def _flush(self, chunk: bytes) -> None:
        self.session.execute(
            insert(AudioChunk), [{"call_id": self.call_id, "seq": self.seq, "data": chunk}]
        )
        self.seq += 1


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
