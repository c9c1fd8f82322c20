"""Types and byte-level helpers shared by the format modules.

Everything here reads untrusted files: sizes read from a header are never trusted for an
allocation (reads are clamped to what the file really holds) and every loop over
header-declared structures has a bound.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO

# The largest duration we believe. Lying headers (a granule or sample count near 2**63) must
# not become a "valid" multi-millennium call; a week is far beyond any real recording.
MAX_DURATION_SECONDS = 7 * 24 * 3600.0


class InvalidAudio(Exception):
    """The bytes are not a complete, readable recording in a supported format.

    `reason` is a short human message (it ends up in the call's error); the call fails with
    the reason code `invalid_audio` and is not retried.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the probe learnt about a recording.

    `format` is the container as `sniff_format` names it; `codec` uses ffmpeg's codec names
    ("mp3", "pcm_s16le", "pcm_mulaw", "adpcm_ima_wav", "gsm_ms", "aac", "opus", ...).
    `bitrate` is the average in bits per second.
    """

    format: str
    codec: str
    duration_seconds: float
    sample_rate: int | None
    channels: int | None
    bitrate: int | None


class BoundedReader(io.RawIOBase):
    """A read-only view of a binary file whose reads never ask for more than the file holds.

    CPython allocates the full requested size before reading, so `read(0xFFFFFFFF)` on a
    header-declared size would reserve 4 GB even for a 1 KB file. Every parser (ours and
    mutagen's) reads through this wrapper instead.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.size = os.fstat(raw.fileno()).st_size
        self._pos = 0
        raw.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self.size - self._pos)
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size == 0:
            return b""
        self._raw.seek(self._pos)
        data = self._raw.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def pread(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer at the end of the file)."""
        self.seek(offset)
        return self.read(size)


class Window:
    """Bounded buffered access to [start, end) of a file for frame walkers: `at(offset, need)`
    returns a buffer and the index of `offset` in it, with `need` bytes there when the range
    has them. Reads are at least 1 MiB so walking costs one read per MiB."""

    CHUNK = 1 << 20

    def __init__(self, reader: BoundedReader, start: int, end: int) -> None:
        self.reader = reader
        self.end = end
        self.buf = b""
        self.base = start

    def at(self, offset: int, need: int) -> tuple[bytes, int]:
        rel = offset - self.base
        if rel < 0 or rel + need > len(self.buf):
            size = min(max(need, self.CHUNK), max(0, self.end - offset))
            self.buf = self.reader.pread(offset, size)
            self.base = offset
            rel = 0
        return self.buf, rel

    def reaches_end(self) -> bool:
        """Whether the current buffer extends to the end of the range."""
        return self.base + len(self.buf) >= self.end


def id3v2_size(header: bytes) -> int | None:
    """Total size (header, body and footer) of the ID3v2 tag starting `header`, else None.

    Only a well-formed tag header counts: version 2-4, sane flags and sync-safe size bytes, so
    "ID3" followed by anything is not taken for a tag.
    """
    if len(header) < 10 or header[:3] != b"ID3":
        return None
    major, revision, flags = header[3], header[4], header[5]
    if major not in (2, 3, 4) or revision == 0xFF:
        return None
    size_bytes = header[6:10]
    if any(b & 0x80 for b in size_bytes):
        return None
    allowed = {2: 0xC0, 3: 0xE0, 4: 0xF0}[major]
    if flags & ~allowed:
        return None
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    footer = 10 if major == 4 and flags & 0x10 else 0
    return 10 + size + footer


# Stacked ID3v2 tags before the audio (some taggers write several); a bound keeps a crafted
# file of back-to-back tags from costing a read per 10 bytes.
MAX_ID3_TAGS = 16
# Zero bytes some taggers leave after a tag without counting them in its size.
MAX_ID3_PADDING = 64 * 1024


def skip_id3v2(reader: BoundedReader, offset: int = 0) -> int:
    """Offset of the first byte after the ID3v2 tag(s) (and stray zero padding) at `offset`."""
    for _ in range(MAX_ID3_TAGS):
        size = id3v2_size(reader.pread(offset, 10))
        if size is None:
            break
        offset += size
    else:
        raise InvalidAudio("too many ID3 tags")
    if offset and reader.pread(offset, 1) == b"\0":
        pad = reader.pread(offset, MAX_ID3_PADDING)
        stripped = len(pad) - len(pad.lstrip(b"\0"))
        offset += stripped
    return offset


def trailing_tags_start(reader: BoundedReader, end: int) -> int:
    """Where known trailing tags (ID3v1, APEv2, Lyrics3v2) begin, looking back from `end`.

    Audio parsers stop there: these are metadata appended after the last frame.
    """
    for _ in range(4):  # each kind at most once, in any order
        before = end
        if end >= 128 and reader.pread(end - 128, 3) == b"TAG":
            end -= 128
        if end >= 32:
            footer = reader.pread(end - 32, 32)
            if footer[:8] == b"APETAGEX":
                size = int.from_bytes(footer[12:16], "little")
                has_header = bool(footer[20 + 3] & 0x80)
                total = size + (32 if has_header else 0)
                if 32 <= total <= end:
                    end -= total
        if end >= 15 and reader.pread(end - 9, 9) == b"LYRICS200":
            try:
                size = int(reader.pread(end - 15, 6))
            except ValueError:
                size = -1
            if 0 <= size <= end - 15:
                end -= 15 + size
        if end == before:
            break
    return end


def check_duration(seconds: float) -> float:
    """Reject durations that cannot describe a real recording."""
    if not seconds > 0:  # also catches NaN
        raise InvalidAudio("no audio samples")
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidAudio("the header claims an impossible duration")
    return seconds
