"""FLAC: sniffing and duration.

mutagen parses STREAMINFO (rate, channels, total samples) and that count is exact for a
complete file, but it says nothing about whether the frames are all there, and mutagen's
FLAC class keeps every metadata block (pictures included) in memory. So the metadata block
headers are walked here with seeks, mutagen parses the STREAMINFO block, and the last frame
of the file is located from the end (frame header CRC-8, whole-frame CRC-16): the sample it
ends on is what a decoder outputs. A last frame cut short, or frames ending before the
STREAMINFO total, mean a truncated file and raise InvalidAudio. An unknown total (0, left by
streaming encoders) is taken from the last frame.
"""

from __future__ import annotations

from mutagen.flac import StreamInfo
from mutagen.flac import error as FLACError

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    check_duration,
    skip_id3v2,
    trailing_tags_start,
)

MAX_BLOCKS = 10_000
# The final frame is looked for in this many bytes at the end (frames are far smaller).
TAIL_BYTES = 1 << 20
# Frame headers (sync and CRC-8 valid) tried as the last frame, nearest the end first: a
# false one inside the last frame's data is rare, so a few tries are plenty.
MAX_CRC_CHECKS = 16


def sniff(window: bytes) -> bool:
    """"fLaC" followed by a STREAMINFO block header (type 0, 34 bytes)."""
    return len(window) >= 8 and window[:4] == b"fLaC" and window[4] & 0x7F == 0 and (
        window[5:8] == b"\x00\x00\x22")


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        table.append(c)
    return table


_CRC8 = _crc8_table()
_CRC16 = _crc16_table()


def _crc8(data: bytes) -> int:
    c = 0
    for b in data:
        c = _CRC8[c ^ b]
    return c


def _crc16(data: bytes) -> int:
    c = 0
    table = _CRC16
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ table[(c >> 8) ^ b]
    return c


_RATES = {1: 88200, 2: 176400, 3: 192000, 4: 8000, 5: 16000, 6: 22050, 7: 24000,
          8: 32000, 9: 44100, 10: 48000, 11: 96000}


def parse_frame_header(buf: bytes, at: int) -> tuple[bool, int, int, int | None] | None:
    """(variable blocking, frame or sample number, block size, sample rate or None for "see
    STREAMINFO") of the frame header at `buf[at]`, if it is one (CRC-8 checked)."""
    if len(buf) < at + 6 or buf[at] != 0xFF or buf[at + 1] & 0xFE != 0xF8:
        return None
    variable = bool(buf[at + 1] & 1)
    bs_code, sr_code = buf[at + 2] >> 4, buf[at + 2] & 0xF
    ch, ss, reserved = buf[at + 3] >> 4, (buf[at + 3] >> 1) & 7, buf[at + 3] & 1
    if bs_code == 0 or sr_code == 15 or ch > 10 or ss == 3 or reserved:
        return None
    p = at + 4
    first = buf[p]
    if first < 0x80:
        extra, number = 0, first
    elif 0xC0 <= first < 0xFE:
        extra = next(n for n, mask in ((1, 0xE0), (2, 0xF0), (3, 0xF8), (4, 0xFC), (5, 0xFE))
                     if first < mask)
        number = first & (0x3F >> extra)
    elif first == 0xFE:
        extra, number = 6, 0
    else:
        return None
    if not variable and extra > 5:
        return None
    if len(buf) < p + 1 + extra + 5:
        return None
    for i in range(1, extra + 1):
        c = buf[p + i]
        if c & 0xC0 != 0x80:
            return None
        number = (number << 6) | (c & 0x3F)
    p += 1 + extra
    if bs_code == 6:
        blocksize = buf[p] + 1
        p += 1
    elif bs_code == 7:
        blocksize = (buf[p] << 8 | buf[p + 1]) + 1
        p += 2
    elif bs_code == 1:
        blocksize = 192
    elif bs_code <= 5:
        blocksize = 576 << (bs_code - 2)
    else:
        blocksize = 256 << (bs_code - 8)
    rate: int | None
    if sr_code == 0:
        rate = None
    elif sr_code == 12:
        rate = buf[p] * 1000
        p += 1
    elif sr_code in (13, 14):
        rate = (buf[p] << 8 | buf[p + 1]) * (1 if sr_code == 13 else 10)
        p += 2
    else:
        rate = _RATES[sr_code]
    if len(buf) <= p or _crc8(buf[at:p]) != buf[p]:
        return None
    return variable, number, blocksize, rate


def probe(reader: BoundedReader) -> AudioInfo:
    start = skip_id3v2(reader)
    if reader.pread(start, 4) != b"fLaC":
        raise InvalidAudio("no FLAC stream marker")
    pos = start + 4
    info: StreamInfo | None = None
    for index in range(MAX_BLOCKS):
        header = reader.pread(pos, 4)
        if len(header) < 4:
            raise InvalidAudio("truncated: FLAC metadata ends early")
        kind, length = header[0] & 0x7F, int.from_bytes(header[1:4], "big")
        if index == 0:
            if kind != 0 or length != 34:
                raise InvalidAudio("FLAC stream does not start with STREAMINFO")
            block = reader.pread(pos + 4, 34)
            if len(block) < 34:
                raise InvalidAudio("truncated: FLAC metadata ends early")
            try:
                info = StreamInfo(block)
            except FLACError as exc:
                raise InvalidAudio("invalid FLAC STREAMINFO") from exc
        elif kind == 127:
            raise InvalidAudio("invalid FLAC metadata block")
        pos += 4 + length
        if header[0] & 0x80:
            break
    else:
        raise InvalidAudio("too many FLAC metadata blocks")
    assert info is not None
    audio_start = pos
    end = trailing_tags_start(reader, reader.size)
    if audio_start >= end:
        raise InvalidAudio("FLAC without audio frames")
    first = parse_frame_header(reader.pread(audio_start, 32), 0)
    if first is None:
        raise InvalidAudio("no FLAC frame after the metadata")

    end_sample = _last_frame_end(reader, audio_start, end, info, variable=first[0])
    if info.total_samples and end_sample < info.total_samples:
        raise InvalidAudio(
            f"truncated: FLAC frames end at sample {end_sample} of {info.total_samples}"
        )
    duration = check_duration(end_sample / info.sample_rate)
    return AudioInfo(
        format="flac",
        codec="flac",
        duration_seconds=duration,
        sample_rate=info.sample_rate,
        channels=info.channels,
        bitrate=round((end - audio_start) * 8 / duration),
    )


def _last_frame_end(reader: BoundedReader, audio_start: int, end: int, info: StreamInfo,
                    variable: bool) -> int:
    """The sample number just after the file's last frame, which must be complete."""
    span = min(end - audio_start, TAIL_BYTES)
    tail = reader.pread(end - span, span)
    sync = b"\xff\xf9" if variable else b"\xff\xf8"
    at = len(tail)
    checked = 0
    while checked < MAX_CRC_CHECKS:
        at = tail.rfind(sync, 0, at)
        if at < 0:
            break
        header = parse_frame_header(tail, at)
        if header is None or (header[3] is not None and header[3] != info.sample_rate):
            continue
        # The frame's CRC-16 covers it all: it checks out only on the real, complete last frame.
        checked += 1
        if len(tail) - at < 8 or _crc16(tail[at:-2]) != int.from_bytes(tail[-2:], "big"):
            continue
        _, number, blocksize, _ = header
        first_sample = number if variable else number * info.max_blocksize
        return first_sample + blocksize
    raise InvalidAudio("truncated: the last FLAC frame is incomplete")
