"""MPEG audio (MP3, and MP1/MP2): frame headers, sniffing and the exact duration.

mutagen's MP3 length comes from a Xing/VBRI header when there is one and is otherwise
extrapolated from the first frame's bitrate, which is wrong for VBR files without a header.
It also ignores the encoder delay and padding that ffmpeg's LAME-tag parser honours when the
tag was written by ffmpeg ("Lavc"/"Lavf"), not LAME. So the duration here is computed by
walking every frame header, streaming through the file in bounded chunks, and trimming delay
and padding exactly as ffmpeg's decoder does. That also detects truncation: a last frame
cut short, or fewer frames than the Xing header announced, raises InvalidAudio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    Window,
    check_duration,
    id3v2_size,
    skip_id3v2,
    trailing_tags_start,
)

_BITRATES = {
    # (mpeg1?, layer) -> kbit/s by index 0..14 (index 0 is "free format", unsupported)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# version bits -> sample rates by index (bits 01 are reserved)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}

# Frames in a row that must check out before a sync word is believed to start a stream.
SYNC_FRAMES = 4
# Non-frame bytes tolerated inside a stream (resynchronisation after damage) before the
# file is judged not to be MPEG audio at all; bounds the work on hostile input too.
MAX_JUNK_BYTES = 1 << 20
# Bytes that SYNC_FRAMES of the longest frames (1729 bytes, layer II at 384 kbit/s, 32 kHz) fit in.
_SYNC_SPAN = SYNC_FRAMES * 1730 + 4


@dataclass(frozen=True)
class FrameHeader:
    version_bits: int
    layer: int  # 1, 2 or 3
    bitrate: int  # bit/s
    sample_rate: int
    padding: int
    channels: int
    protected: bool
    length: int  # bytes, header included

    @property
    def mpeg1(self) -> bool:
        return self.version_bits == 3

    @property
    def samples(self) -> int:
        if self.layer == 1:
            return 384
        if self.layer == 3 and not self.mpeg1:
            return 576
        return 1152


def parse_header(b: bytes | memoryview, pos: int = 0) -> FrameHeader | None:
    """The frame header at `pos`, or None when those 4 bytes are not a valid header."""
    if len(b) < pos + 4 or b[pos] != 0xFF or b[pos + 1] & 0xE0 != 0xE0:
        return None
    return _parse_cached(b[pos + 1], b[pos + 2], b[pos + 3] & 0xC3)


@cache
def _parse_cached(b1: int, b2: int, b3: int) -> FrameHeader | None:
    version_bits = (b1 >> 3) & 3
    layer_bits = (b1 >> 1) & 3
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version_bits == 1 or layer_bits == 0 or rate_index == 3:
        return None
    if bitrate_index in (0, 15) or b3 & 3 == 2:  # free format; bad bitrate; reserved emphasis
        return None
    mpeg1 = version_bits == 3
    layer = 4 - layer_bits
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _RATES[version_bits][rate_index]
    padding = (b2 >> 1) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and not mpeg1:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    channels = 1 if (b3 >> 6) == 3 else 2
    return FrameHeader(version_bits, layer, bitrate, rate, padding, channels,
                       not (b1 & 1), length)


def _same_stream(a: FrameHeader, b: FrameHeader) -> bool:
    return (a.version_bits, a.layer, a.sample_rate) == (b.version_bits, b.layer, b.sample_rate)


def frames_from(data: bytes, pos: int, at_eof: bool) -> bool:
    """Whether `data[pos:]` starts a run of consistent frames (SYNC_FRAMES of them, or fewer
    ending exactly at the end of `data` when `at_eof`). Used to sniff and to resynchronise."""
    first = parse_header(data, pos)
    if first is None:
        return False
    count = 0
    h: FrameHeader | None = first
    while h is not None and _same_stream(first, h):
        pos += h.length
        count += 1
        if count >= SYNC_FRAMES:
            return True
        if pos == len(data):
            return at_eof
        if pos + 4 > len(data):
            # The next header lies beyond what we have: enough frames if we cannot see more.
            return count >= 2 and not at_eof
        h = parse_header(data, pos)
    return False


# --- Xing / Info / VBRI / LAME ---------------------------------------------------------------


@dataclass(frozen=True)
class VbrHeader:
    kind: str  # "xing", "info" or "vbri"
    frames: int | None
    bytes: int | None
    start_pad: int = 0
    end_pad: int = 0


def _side_info_size(h: FrameHeader) -> int:
    if h.mpeg1:
        return 17 if h.channels == 1 else 32
    return 9 if h.channels == 1 else 17


def parse_vbr_header(frame: bytes, h: FrameHeader) -> VbrHeader | None:
    """The Xing/Info or VBRI header in the first frame, if any (layer III only).

    Such a frame carries no audio; ffmpeg skips it. Encoder delay and padding come from the
    LAME extension, trusted like ffmpeg does when written by LAME or by ffmpeg itself.
    """
    if h.layer != 3:
        return None
    at = 4 + (2 if h.protected else 0) + _side_info_size(h)
    tag = frame[at : at + 4]
    if tag in (b"Xing", b"Info"):
        p = at + 4
        if len(frame) < p + 4:
            return None
        flags = struct.unpack_from(">I", frame, p)[0]
        p += 4
        frames = nbytes = None
        if flags & 1:
            if len(frame) < p + 4:
                return None
            frames = struct.unpack_from(">I", frame, p)[0]
            p += 4
        if flags & 2:
            if len(frame) < p + 4:
                return None
            nbytes = struct.unpack_from(">I", frame, p)[0]
            p += 4
        if flags & 4:
            p += 100
        if flags & 8:
            p += 4
        start_pad = end_pad = 0
        lame = frame[p : p + 24]
        if len(lame) == 24 and lame[:4] in (b"LAME", b"Lavf", b"Lavc"):
            delays = int.from_bytes(lame[21:24], "big")
            start_pad, end_pad = delays >> 12, delays & 0xFFF
        return VbrHeader("xing" if tag == b"Xing" else "info", frames, nbytes, start_pad, end_pad)
    vbri = frame[36 : 36 + 18]
    if len(vbri) == 18 and vbri[:4] == b"VBRI":
        nbytes, frames = struct.unpack_from(">II", vbri, 10)
        return VbrHeader("vbri", frames, nbytes)
    return None


# --- sniffing ------------------------------------------------------------------------------


def sniff(window: bytes, at_eof: bool) -> bool:
    """Whether `window` (the bytes right after any ID3v2 tags) starts an MPEG audio stream."""
    return frames_from(window, 0, at_eof)


# --- probing -------------------------------------------------------------------------------


_CODECS = {1: "mp1", 2: "mp2", 3: "mp3"}


def probe(reader: BoundedReader) -> AudioInfo:
    start = skip_id3v2(reader)
    end = trailing_tags_start(reader, reader.size)
    return probe_range(reader, start, end)


def probe_range(reader: BoundedReader, start: int, end: int, vbr_tags: bool = True) -> AudioInfo:
    """Probe the MPEG audio stream in [start, end) of the file (also used for MP3 in WAV,
    where ffmpeg does not look for a Xing header: `vbr_tags=False`)."""
    if start >= end:
        raise InvalidAudio("no MPEG audio frames")
    walker = Window(reader, start, end)
    buf, rel = walker.at(start, _SYNC_SPAN)
    first = parse_header(buf, rel)
    if first is None or not frames_from(buf, rel, at_eof=walker.reaches_end()):
        raise InvalidAudio("no MPEG audio frames at the start")

    vbr = parse_vbr_header(buf[rel : rel + first.length], first) if vbr_tags else None
    pos = start + first.length if vbr else start

    frames = 0
    audio_bytes = 0
    junk = 0
    while pos < end:
        buf, rel = walker.at(pos, 4)
        h = parse_header(buf, rel)
        if h is not None and _same_stream(first, h):
            if pos + h.length > end:
                raise InvalidAudio("truncated: the last MPEG frame is incomplete")
            frames += 1
            audio_bytes += h.length
            pos += h.length
            continue
        tail = buf[rel : rel + (end - pos)]
        if len(tail) < 4 and tail[:1] == b"\xff" and (len(tail) < 2 or tail[1] & 0xE0 == 0xE0):
            # A cut inside the last frame's header, not junk after the last frame.
            raise InvalidAudio("truncated: the last MPEG frame header is incomplete")
        # Not a frame: an ID3v2 tag between streams, or damage to skip.
        tag = id3v2_size(buf[rel : rel + 10])
        if tag is not None and pos + tag <= end:
            pos += tag
            continue
        pos, skipped = _resync(walker, pos, end)
        junk += skipped
        if junk > MAX_JUNK_BYTES:
            raise InvalidAudio("too much data that is not MPEG audio")

    if frames == 0:
        raise InvalidAudio("no MPEG audio frames")
    samples = frames * first.samples
    # One frame of slack: some encoders count the header frame itself.
    if vbr is not None and vbr.kind != "vbri":
        if vbr.frames is not None and frames + 1 < vbr.frames:
            raise InvalidAudio(
                f"truncated: the Xing header announces {vbr.frames} frames, {frames} present"
            )
        samples -= vbr.start_pad + vbr.end_pad
    elif vbr is not None and vbr.frames is not None and frames + 1 < vbr.frames:
        raise InvalidAudio(
            f"truncated: the VBRI header announces {vbr.frames} frames, {frames} present"
        )
    duration = check_duration(samples / first.sample_rate)
    return AudioInfo(
        format="mp3",
        codec=_CODECS[first.layer],
        duration_seconds=duration,
        sample_rate=first.sample_rate,
        channels=first.channels,
        bitrate=round(audio_bytes * 8 / duration),
    )


def _resync(walker: Window, pos: int, end: int) -> tuple[int, int]:
    """Next offset after `pos` where a run of frames starts (or `end`), and bytes skipped."""
    start = pos
    pos += 1
    while pos < end:
        buf, rel = walker.at(pos, _SYNC_SPAN)
        at = buf.find(b"\xff", rel)
        if at < 0:
            pos = walker.base + len(buf)
            if pos - start > MAX_JUNK_BYTES:
                break
            continue
        pos = walker.base + at
        if pos - start > MAX_JUNK_BYTES:
            break
        buf, rel = walker.at(pos, _SYNC_SPAN)
        if frames_from(buf, rel, at_eof=walker.reaches_end()):
            return pos, pos - start
        pos += 1
    return min(pos, end), min(pos, end) - start
