"""Byte-range reads of a stored recording (HTTP Range, so a browser player can seek).

Every chunk but the last holds exactly CHUNK_BYTES, so a byte offset maps to one chunk and an
offset inside it; PostgreSQL cuts the wanted slice (`substring` on bytea), so a range costs one
small query per chunk it touches and memory stays at one chunk at most.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import func, select

from call_downloader.db.engine import get_sessionmaker
from call_downloader.db.models import AudioChunk
from call_downloader.storage.audio import CHUNK_BYTES


def stored_size(call_id: uuid.UUID) -> int:
    """The recording's size in bytes, from the chunks themselves (0 when none is stored)."""
    session = get_sessionmaker()()
    try:
        total = session.execute(
            select(func.coalesce(func.sum(func.length(AudioChunk.data)), 0)).where(
                AudioChunk.call_id == call_id
            )
        ).scalar()
        return int(total or 0)
    finally:
        session.close()


def iter_range(
    call_id: uuid.UUID, start: int, end: int, *, piece_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield bytes `start` to `end` inclusive of the recording, at most `piece_bytes` at a time.

    Stops early (yields fewer bytes) if the stored audio is shorter than `end + 1`; callers
    check the size first. Uses its own session, so it can run after the request's transaction
    while the response streams.
    """
    if start < 0 or end < start:
        return
    session = get_sessionmaker()()
    try:
        position = start
        while position <= end:
            seq, offset = divmod(position, CHUNK_BYTES)
            length = min(end - position + 1, CHUNK_BYTES - offset, piece_bytes)
            data = session.execute(
                # substring() is 1-based on PostgreSQL (and SQLite).
                select(func.substring(AudioChunk.data, offset + 1, length)).where(
                    AudioChunk.call_id == call_id, AudioChunk.seq == seq
                )
            ).scalar()
            # Each query is its own short read: no transaction stays open while a slow
            # client drains the response.
            session.rollback()
            if not data:
                return
            yield bytes(data)
            position += len(data)
            if len(data) < length:
                return  # the stored audio ends here
    finally:
        session.close()
