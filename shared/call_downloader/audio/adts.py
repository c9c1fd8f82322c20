"""Raw AAC in ADTS framing: sniffing and the exact duration.

mutagen's AAC length is an estimate from the bitrate of the first frames. ADTS has no index,
so the exact figure comes from counting frames (1024 samples per raw data block, which is
what ffmpeg decodes), streaming through the file in bounded chunks. A last frame cut short
raises InvalidAudio (truncated).
"""

from __future__ import annotations

from dataclasses import dataclass

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    Window,
    check_duration,
    skip_id3v2,
    trailing_tags_start,
)

RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
SYNC_FRAMES = 4
MAX_JUNK_BYTES = 1 << 20
# Bytes SYNC_FRAMES of the longest ADTS frames (13-bit length) fit in.
_SYNC_SPAN = SYNC_FRAMES * 8192


@dataclass(frozen=True)
class AdtsHeader:
    mpeg_version: int
    profile: int
    rate_index: int
    channel_config: int
    length: int
    blocks: int

    @property
    def sample_rate(self) -> int:
        return RATES[self.rate_index]

    def same_stream(self, other: AdtsHeader) -> bool:
        return (self.mpeg_version, self.profile, self.rate_index) == (
            other.mpeg_version, other.profile, other.rate_index)


def parse_header(b: bytes, pos: int = 0) -> AdtsHeader | None:
    if len(b) < pos + 7 or b[pos] != 0xFF or b[pos + 1] & 0xF6 != 0xF0:  # sync, layer 0
        return None
    protection_absent = b[pos + 1] & 1
    rate_index = (b[pos + 2] >> 2) & 0xF
    if rate_index >= len(RATES):
        return None
    length = ((b[pos + 3] & 3) << 11) | (b[pos + 4] << 3) | (b[pos + 5] >> 5)
    header_size = 7 if protection_absent else 9
    if length <= header_size:
        return None
    return AdtsHeader(
        mpeg_version=(b[pos + 1] >> 3) & 1,
        profile=b[pos + 2] >> 6,
        rate_index=rate_index,
        channel_config=((b[pos + 2] & 1) << 2) | (b[pos + 3] >> 6),
        length=length,
        blocks=(b[pos + 6] & 3) + 1,
    )


def frames_from(data: bytes, pos: int, at_eof: bool) -> bool:
    """Whether a run of consistent ADTS frames starts at `data[pos]` (see mpeg.frames_from)."""
    first = parse_header(data, pos)
    if first is None:
        return False
    count = 0
    h: AdtsHeader | None = first
    while h is not None and first.same_stream(h):
        pos += h.length
        count += 1
        if count >= SYNC_FRAMES:
            return True
        if pos == len(data):
            return at_eof
        if pos + 7 > len(data):
            return count >= 2 and not at_eof
        h = parse_header(data, pos)
    return False


def sniff(window: bytes, at_eof: bool) -> bool:
    return frames_from(window, 0, at_eof)


def probe(reader: BoundedReader) -> AudioInfo:
    start = skip_id3v2(reader)
    end = trailing_tags_start(reader, reader.size)
    walker = Window(reader, start, end)
    buf, rel = walker.at(start, _SYNC_SPAN)
    first = parse_header(buf, rel)
    if first is None or not frames_from(buf, rel, at_eof=walker.reaches_end()):
        raise InvalidAudio("no ADTS frames at the start")
    frames = blocks = audio_bytes = junk = 0
    pos = start
    while pos < end:
        buf, rel = walker.at(pos, 7)
        h = parse_header(buf, rel)
        if h is not None and first.same_stream(h):
            if pos + h.length > end:
                raise InvalidAudio("truncated: the last ADTS frame is incomplete")
            frames += 1
            blocks += h.blocks
            audio_bytes += h.length
            pos += h.length
            continue
        if end - pos < 7 and _starts_like_a_header(buf[rel : rel + (end - pos)]):
            # A cut inside the last frame's header, not junk after the last frame.
            raise InvalidAudio("truncated: the last ADTS frame header is incomplete")
        # Damage: look for the next run of frames.
        nxt = _resync(walker, pos, end)
        junk += nxt - pos
        if junk > MAX_JUNK_BYTES:
            raise InvalidAudio("too much data that is not AAC")
        pos = nxt
    if frames == 0:
        raise InvalidAudio("no ADTS frames")
    duration = check_duration(blocks * 1024 / first.sample_rate)
    return AudioInfo(
        format="aac",
        codec="aac",
        duration_seconds=duration,
        sample_rate=first.sample_rate,
        channels=first.channel_config or None,
        bitrate=round(audio_bytes * 8 / duration),
    )


def _starts_like_a_header(tail: bytes) -> bool:
    """`tail`, shorter than a header, is the start of one: the sync word as far as it goes."""
    return bool(tail) and tail[0] == 0xFF and (len(tail) < 2 or tail[1] & 0xF6 == 0xF0)


def _resync(walker: Window, pos: int, end: int) -> int:
    """The next offset after `pos` where a run of frames starts, or `end`."""
    start = pos
    pos += 1
    while pos < end and pos - start <= MAX_JUNK_BYTES:
        buf, rel = walker.at(pos, _SYNC_SPAN)
        at = buf.find(b"\xff", rel)
        if at < 0:
            pos = walker.base + len(buf)
            continue
        pos = walker.base + at
        buf, rel = walker.at(pos, _SYNC_SPAN)
        if frames_from(buf, rel, at_eof=walker.reaches_end()):
            return pos
        pos += 1
    return min(pos, end)
