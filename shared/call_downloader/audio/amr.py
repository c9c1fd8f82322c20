"""AMR-NB and AMR-WB in the RFC 4867 storage format (`.amr`, `.awb`): sniffing and duration.

The file is a magic line and frames, nothing else: no header with a length, and a bit rate
estimate is off as soon as the mode changes or DTX sets in. Every frame is 20 ms, and its
size follows from the mode in its one-byte header, so the frames are walked here (streaming,
in bounded reads) and counted. SID and NO_DATA frames (DTX, the silences of a call) count as
the 20 ms of comfort noise a decoder renders for them. (ffmpeg's own AMR-NB decoder skips
them with an error; its demuxer's timestamps count them.)

Checks: a frame header with the F bit or padding bits set, or a reserved frame type, is not
AMR (InvalidAudio: corrupt); a last frame cut short is a truncation. A file without a single
speech frame, or with most frames flagged damaged (the Q bit clear, which encoders never
write), is not a recording either: that is what filler after the magic looks like ('x' is a
damaged NO_DATA frame header, '|' a good one).
"""

from __future__ import annotations

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    Window,
    check_duration,
)

MAGIC_NB, MAGIC_WB = b"#!AMR\n", b"#!AMR-WB\n"
FRAME_SECONDS = 0.02
# Frame headers that must check out before a file is taken for AMR: a random byte is a valid
# header about one time in thirteen.
SNIFF_FRAMES = 16

# Bytes of a frame, its header byte included, by frame type (RFC 4867 5.3; 3GPP TS 26.101 and
# 26.201). None: reserved types, which a stream does not contain.
NB_SIZES = (13, 14, 16, 18, 20, 21, 27, 32, 6, None, None, None, None, None, None, 1)
WB_SIZES = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, None, None, None, None, 1, 1)


def sniff(head: bytes) -> str | None:
    """"amr" or "awb" for the AMR-NB / AMR-WB magic followed by valid frame headers (up to
    SNIFF_FRAMES of them, or as many as `head` holds: a file of only the magic is left to the
    probe to refuse)."""
    for magic, fmt, sizes in ((MAGIC_NB, "amr", NB_SIZES), (MAGIC_WB, "awb", WB_SIZES)):
        if head.startswith(magic):
            pos, seen, damaged = len(magic), 0, 0
            for _ in range(SNIFF_FRAMES):
                if pos >= len(head):
                    break
                size = _frame_size(head[pos], sizes)
                if size is None:
                    return None
                seen += 1
                damaged += not head[pos] & _GOOD
                pos += size
            return None if damaged * 2 > seen else fmt
    return None


_GOOD = 0x04  # the Q bit: the frame is not damaged


def _frame_size(header: int, sizes: tuple[int | None, ...]) -> int | None:
    if header & 0x83:  # F bit (another frame follows: not in storage format), padding
        return None
    return sizes[(header >> 3) & 0x0F]


def probe(reader: BoundedReader, fmt: str) -> AudioInfo:
    wideband = fmt == "awb"
    magic, sizes = (MAGIC_WB, WB_SIZES) if wideband else (MAGIC_NB, NB_SIZES)
    if reader.pread(0, len(magic)) != magic:
        raise InvalidAudio("no AMR magic")
    rate = 16000 if wideband else 8000
    end = reader.size
    walker = Window(reader, len(magic), end)
    speech_types = 9 if wideband else 8  # below these: speech modes; then SID, NO_DATA
    frames = speech = damaged = 0
    pos = len(magic)
    while pos < end:
        buf, rel = walker.at(pos, 1)
        header = buf[rel]
        size = _frame_size(header, sizes)
        if size is None:
            raise InvalidAudio(f"corrupt AMR frame header at byte {pos}")
        if pos + size > end:
            raise InvalidAudio("truncated: the last AMR frame is incomplete")
        frames += 1
        speech += (header >> 3) & 0x0F < speech_types
        damaged += not header & _GOOD
        pos += size
    if frames == 0:
        raise InvalidAudio("no AMR frames")
    if speech == 0:
        raise InvalidAudio("no AMR speech frames")
    if damaged * 2 > frames:
        raise InvalidAudio("most AMR frames are flagged damaged: not a usable recording")
    duration = check_duration(frames * FRAME_SECONDS)
    return AudioInfo(
        format=fmt,
        codec="amr_wb" if wideband else "amr_nb",
        duration_seconds=duration,
        sample_rate=rate,
        channels=1,
        bitrate=round((end - len(magic)) * 8 / duration),
    )
