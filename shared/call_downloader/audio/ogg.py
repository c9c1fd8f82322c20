"""Ogg Vorbis and Ogg Opus: sniffing and duration.

mutagen reads the identification header (channels, rate, nominal bitrate) and its length is
exact: the granule position of the last page (minus Opus' pre-skip), which is also where
ffmpeg stops decoding. What mutagen does not check is that the stream is complete, and on a
file whose last page lacks the end-of-stream flag it re-reads every page. So the last page
is found here from the tail of the file: the pages there must chain up to the end of the
file exactly; a last page cut short means a truncated file (InvalidAudio). A complete stream
without the end-of-stream flag (a live recording that was stopped) is accepted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mutagen.ogg import OggPage
from mutagen.ogg import error as OggError
from mutagen.oggopus import OggOpusInfo
from mutagen.oggvorbis import OggVorbisInfo

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    check_duration,
    trailing_tags_start,
)

MAX_PAGE = 27 + 255 + 255 * 255
_HEADER = struct.Struct("<4sBBqIIiB")
_EXACT, _PAST, _BROKEN = "exact", "past", "broken"


def sniff(head: bytes) -> str | None:
    """"ogg" or "opus" when `head` is the first page of an Ogg Vorbis or Opus stream."""
    if len(head) < 28 or head[:4] != b"OggS" or head[4] != 0 or not head[5] & 0x02:
        return None
    segments = head[26]
    packet = head[27 + segments : 27 + segments + 8]
    if packet[:7] == b"\x01vorbis":
        return "ogg"
    if packet == b"OpusHead":
        return "opus"
    return None


@dataclass(frozen=True)
class _Page:
    offset: int
    size: int
    flags: int
    granule: int
    serial: int


def _page_at(buf: bytes, at: int) -> _Page | str:
    """The page whose header starts at `buf[at]`; _PAST if its header runs beyond the end of
    `buf`, _BROKEN if it is not a page header."""
    if len(buf) < at + 27:
        return _PAST
    magic, version, flags, granule, serial, _seq, _crc, segments = _HEADER.unpack_from(buf, at)
    if magic != b"OggS" or version != 0:
        return _BROKEN
    if len(buf) < at + 27 + segments:
        return _PAST
    size = 27 + segments + sum(buf[at + 27 : at + 27 + segments])
    return _Page(at, size, flags, granule, serial)


def _last_page(reader: BoundedReader, serial: int) -> _Page | None:
    """The last page of stream `serial` that finishes a packet, checking the file ends with a
    complete page. Returns None when no such page is among the file's last pages."""
    end = trailing_tags_start(reader, reader.size)
    span = min(end, 2 * MAX_PAGE + 64)
    base = end - span
    tail = reader.pread(base, span)
    candidates = []
    at = tail.find(b"OggS")
    while at >= 0:
        candidates.append(at)
        at = tail.find(b"OggS", at + 1)
    # Chains of pages, resolved from the end: a chain is "exact" when its pages end exactly
    # at the end of the file, "past" when its last page runs beyond it (truncated), else
    # "broken" (a false "OggS" inside packet data, or junk after the last page).
    status: dict[int, str] = {}
    last_of_serial: dict[int, _Page | None] = {}
    for at in reversed(candidates):
        page = _page_at(tail, at)
        if isinstance(page, str):
            status[at], last_of_serial[at] = page, None
            continue
        nxt = at + page.size
        if nxt == len(tail):
            status[at] = _EXACT
            later = None
        elif nxt > len(tail):
            status[at] = _PAST
            later = None
        else:
            status[at] = status.get(nxt, _BROKEN)
            later = last_of_serial.get(nxt)
        own = page if page.serial == serial and page.granule != -1 else None
        last_of_serial[at] = later or own
    for at in candidates:  # the earliest chain that is not broken decides
        if status[at] == _EXACT:
            found = last_of_serial[at]
            return _Page(base + found.offset, found.size, found.flags, found.granule,
                         found.serial) if found else None
        if status[at] == _PAST:
            raise InvalidAudio("truncated: the last Ogg page is incomplete")
    raise InvalidAudio("the file does not end with a complete Ogg page")


def probe(reader: BoundedReader, fmt: str) -> AudioInfo:
    try:
        return _probe(reader, fmt)
    except (OggError, EOFError) as exc:  # mutagen's page and header errors
        raise InvalidAudio("truncated or corrupt Ogg page") from exc


def _probe(reader: BoundedReader, fmt: str) -> AudioInfo:
    first = OggPage(reader)
    if not first.first or not first.packets:
        raise InvalidAudio("the Ogg stream does not start with a header page")
    packet = first.packets[0]
    reader.seek(0)
    if fmt == "ogg":
        if not packet.startswith(b"\x01vorbis") or len(packet) < 30:
            raise InvalidAudio("no Vorbis identification header")
        info = OggVorbisInfo(reader)
        codec, rate, pre_skip = "vorbis", info.sample_rate, 0
    else:
        if not packet.startswith(b"OpusHead") or len(packet) < 19:
            raise InvalidAudio("no Opus identification header")
        info = OggOpusInfo(reader)
        # Opus always decodes at 48 kHz; granules count 48 kHz samples including pre-skip.
        codec, rate, pre_skip = "opus", 48000, struct.unpack_from("<H", packet, 10)[0]
    if not info.channels:
        raise InvalidAudio("the Ogg header declares no channels")

    last = _last_page(reader, first.serial)
    if last is None:
        # Multiplexed streams: the audio's last page is further back than the tail.
        fallback = OggPage.find_last(reader, first.serial, finishing=True)
        if fallback is None:
            raise InvalidAudio("no complete Ogg audio page")
        granule = fallback.position
    else:
        granule = last.granule
    duration = check_duration((granule - pre_skip) / rate)
    return AudioInfo(
        format=fmt,
        codec=codec,
        duration_seconds=duration,
        sample_rate=rate,
        channels=info.channels,
        bitrate=round(reader.size * 8 / duration),
    )
