"""MP4/M4A (ISO BMFF) audio: sniffing and the duration a decoder outputs.

mutagen's MP4 length is the track header's duration: it counts the encoder priming that
decoders drop (the edit list's media time, 1024 samples for AAC: 0.128 s at 8 kHz) and
trims the last frame that decoders output whole. So the duration is computed here from the
sample tables as ffmpeg decodes them: whole frames for AAC/MP3-in-MP4, minus the edit list's
priming, cut where the edit ends. mutagen still parses the sample description (codec,
channels, rate), fed only the few boxes it needs so that a huge or hostile file costs
bounded memory. Fragmented MP4 (moof/trun, as browsers record) is summed fragment by
fragment. AMR in 3GP (samr/sawb sample entries, as phones record) is described here, not by
mutagen: its samples are 20 ms frames, NO_DATA and SID frames included, summed from the tables
like any other codec's.

Truncation: a top-level box running past the end of the file, sample data beyond the file,
or fragments announcing more sample bytes than their mdat holds raise InvalidAudio.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

from mutagen import MutagenError
from mutagen.mp4 import MP4Info
from mutagen.mp4._atom import AtomError, Atoms

from call_downloader.audio.common import AudioInfo, BoundedReader, InvalidAudio, check_duration

# ftyp major/compatible brands of MP4 files that may hold audio. The probe still requires a
# sound track, so a video-only file with one of these brands fails there.
AUDIO_BRANDS = frozenset({
    b"M4A ", b"M4B ", b"M4P ", b"mp41", b"mp42", b"mp71", b"isom", b"iso2", b"iso3",
    b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"dash", b"MSNV", b"F4A ",
    b"F4B ", b"3gp4", b"3gp5", b"3gp6", b"3gp7", b"3g2a", b"avc1", b"qt  ", b"cmfc", b"caaa",
})
MAX_BOXES = 100_000
MAX_DEPTH = 12  # moov/trak/mdia/minf/stbl is 5 deep
# Boxes read whole (headers and sample descriptions); sample tables are streamed instead.
MAX_SMALL_BOX = 1 << 20
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf"}


def sniff(head: bytes) -> bool:
    """An ftyp box first, of sane size, with an audio-capable major or compatible brand."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return False
    size = struct.unpack_from(">I", head)[0]
    if size < 16 or size > 4096 or (size - 16) % 4:
        return False
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(size, len(head)), 4)]
    return any(b in AUDIO_BRANDS for b in brands)


@dataclass
class _Box:
    name: bytes
    offset: int
    header: int
    size: int
    children: list[_Box] = field(default_factory=list)

    @property
    def body(self) -> int:
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size

    def find(self, *path: bytes) -> _Box | None:
        box: _Box | None = self
        for name in path:
            assert box is not None
            box = next((c for c in box.children if c.name == name), None)
            if box is None:
                return None
        return box


class _Parser:
    def __init__(self, reader: BoundedReader) -> None:
        self.reader = reader
        self.budget = MAX_BOXES

    def boxes(self, start: int, end: int, top: bool, depth: int = 0) -> Iterator[_Box]:
        if depth > MAX_DEPTH:
            raise InvalidAudio("MP4 boxes nested too deep")
        pos = start
        while pos < end:
            self.budget -= 1
            if self.budget < 0:
                raise InvalidAudio("too many MP4 boxes")
            head = self.reader.pread(pos, 16)
            if len(head) < 8:
                if top:
                    raise InvalidAudio("truncated: the file ends inside an MP4 box header")
                raise InvalidAudio("invalid MP4 box")
            size, name = struct.unpack_from(">I4s", head)
            header = 8
            if size == 1:
                if len(head) < 16:
                    raise InvalidAudio("truncated MP4 box header")
                size, header = struct.unpack_from(">Q", head, 8)[0], 16
            elif size == 0 and top:
                size = end - pos  # "to the end of the file"
            if size < header:
                raise InvalidAudio("invalid MP4 box size")
            if pos + size > end:
                if top:
                    raise InvalidAudio(
                        f"truncated: the MP4 {name!r} box runs past the end of the file")
                raise InvalidAudio("an MP4 box overflows its parent")
            box = _Box(name, pos, header, size)
            if name in _CONTAINERS:
                box.children = list(self.boxes(box.body, box.end, False, depth + 1))
            yield box
            pos += size

    def small(self, box: _Box) -> bytes:
        """The payload of a small box (headers, sample descriptions), read whole."""
        if box.size - box.header > MAX_SMALL_BOX:
            raise InvalidAudio(f"MP4 {box.name!r} box is implausibly large")
        return self.reader.pread(box.body, box.size - box.header)

    def entries(self, box: _Box, skip: int, fmt: str) -> Iterator[tuple[int, ...]]:
        """Table entries of a full box: `skip` bytes after version/flags hold the entry count,
        then entries of struct `fmt`; streamed in bounded reads."""
        head = self.reader.pread(box.body, 4 + skip + 4)
        if len(head) < 8 + skip:
            raise InvalidAudio(f"MP4 {box.name!r} box too short")
        count = struct.unpack_from(">I", head, 4 + skip)[0]
        entry = struct.Struct(">" + fmt)
        start = box.body + 8 + skip
        if count * entry.size > box.end - start:
            raise InvalidAudio(f"MP4 {box.name!r} table overflows its box")
        per_read = max(1, (1 << 16) // entry.size)
        done = 0
        while done < count:
            n = min(per_read, count - done)
            data = self.reader.pread(start + done * entry.size, n * entry.size)
            yield from entry.iter_unpack(data)
            done += n


def _full_box_times(data: bytes) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd payload."""
    if len(data) < 4:
        raise InvalidAudio("MP4 time header too short")
    if data[0] == 1:
        if len(data) < 32:
            raise InvalidAudio("MP4 time header too short")
        timescale, duration = struct.unpack_from(">IQ", data, 20)
    else:
        if len(data) < 20:
            raise InvalidAudio("MP4 time header too short")
        timescale, duration = struct.unpack_from(">II", data, 12)
    return timescale, duration


def _mutagen_info(p: _Parser, hdlr: _Box, mdhd: _Box, stsd: _Box) -> MP4Info:
    """mutagen's reading of the sample description, from a minimal copy of the track."""

    def box(name: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), name) + payload

    def raw(b: _Box) -> bytes:
        return p.reader.pread(b.offset, b.header) + p.small(b)

    moov = box(b"moov", box(b"trak", box(b"mdia", raw(hdlr) + raw(mdhd) + box(
        b"minf", box(b"stbl", raw(stsd))))))
    fileobj = BytesIO(moov)
    try:
        return MP4Info(Atoms(fileobj), fileobj)
    except (MutagenError, AtomError) as exc:
        raise InvalidAudio("unreadable MP4 audio sample description") from exc


def probe(reader: BoundedReader) -> AudioInfo:
    p = _Parser(reader)
    top = list(p.boxes(0, reader.size, top=True))
    if not top or top[0].name != b"ftyp":
        raise InvalidAudio("MP4 without an ftyp box first")
    moov = next((b for b in top if b.name == b"moov"), None)
    if moov is None:
        raise InvalidAudio("MP4 without a moov box (truncated or not a complete file)")
    mvhd = moov.find(b"mvhd")
    movie_timescale = _full_box_times(p.small(mvhd))[0] if mvhd else 0

    for trak in moov.children:
        if trak.name != b"trak":
            continue
        hdlr = trak.find(b"mdia", b"hdlr")
        if hdlr is not None and p.small(hdlr)[8:12] == b"soun":
            break
    else:
        raise InvalidAudio("MP4 without an audio track")
    mdhd = trak.find(b"mdia", b"mdhd")
    stbl = trak.find(b"mdia", b"minf", b"stbl")
    stsd = stbl.find(b"stsd") if stbl else None
    if mdhd is None or stbl is None or stsd is None:
        raise InvalidAudio("MP4 audio track without its headers")
    timescale, _ = _full_box_times(p.small(mdhd))
    if not timescale:
        raise InvalidAudio("MP4 audio track with a zero timescale")
    info = _amr_info(p, stsd) or _mutagen_info(p, hdlr, mdhd, stsd)
    whole_frames = info.codec.startswith("mp4a")

    ticks, sample_bytes, frame = _sample_tables(p, stbl, whole_frames)
    if ticks == 0:
        ticks, sample_bytes, frame = _fragments(p, top, moov, trak, whole_frames)
    end_tick = _apply_edits(p, trak, ticks, frame, timescale, movie_timescale)
    duration = check_duration(end_tick / timescale)
    return AudioInfo(
        format="m4a",
        codec=_codec_name(info.codec),
        duration_seconds=duration,
        sample_rate=info.sample_rate or None,
        channels=info.channels or None,
        bitrate=round(sample_bytes * 8 / duration) if sample_bytes else info.bitrate or None,
    )


# 3GPP AMR sample entries (TS 26.244): their channel count and sample size fields are fixed
# placeholders (2, 16), so the facts come from the codec itself: mono, 8 or 16 kHz.
_AMR_ENTRIES = {b"samr": ("amr_nb", 8000), b"sawb": ("amr_wb", 16000)}


@dataclass
class _AmrInfo:
    codec: str
    sample_rate: int
    channels: int = 1
    bitrate: int = 0


def _amr_info(p: _Parser, stsd: _Box) -> _AmrInfo | None:
    """The AMR-NB/WB facts when the track's first sample entry is samr or sawb (which
    mutagen does not describe), else None."""
    entry = p.reader.pread(stsd.body + 8, 8)
    if len(entry) < 8 or entry[4:8] not in _AMR_ENTRIES:
        return None
    codec, rate = _AMR_ENTRIES[entry[4:8]]
    return _AmrInfo(codec, rate)


def _codec_name(codec: str) -> str:
    if codec.startswith("mp4a.40") or codec == "mp4a":
        return "aac"
    if codec in ("mp4a.69", "mp4a.6B", "mp4a.6b"):
        return "mp3"
    return {"alac": "alac", "ac-3": "ac3", "ec-3": "eac3", "Opus": "opus",
            "fLaC": "flac"}.get(codec, codec or "unknown")


def _sample_tables(p: _Parser, stbl: _Box, whole_frames: bool) -> tuple[int, int, int]:
    """(decoded ticks, sample bytes, frame ticks) of a classic (non-fragmented) track."""
    stts = stbl.find(b"stts")
    if stts is None:
        return 0, 0, 0
    ticks = samples = 0
    first_delta = prev_delta = last_delta = 0
    last_count = 0
    for count, delta in p.entries(stts, 0, "II"):
        if not first_delta:
            first_delta = delta
        prev_delta, last_delta, last_count = last_delta, delta, count
        ticks += count * delta
        samples += count
    if whole_frames and last_count == 1 and 0 < last_delta < prev_delta:
        # The encoder's last frame is shorter in the table; decoders output it whole.
        ticks += prev_delta - last_delta
    if samples == 0:
        return 0, 0, 0

    stsz = stbl.find(b"stsz")
    if stsz is None:
        raise InvalidAudio("MP4 audio track without sample sizes")
    head = p.reader.pread(stsz.body, 12)
    if len(head) < 12:
        raise InvalidAudio("MP4 stsz box too short")
    uniform, count = struct.unpack_from(">II", head, 4)
    if count != samples:
        raise InvalidAudio("MP4 sample tables disagree on the number of samples")
    if uniform:
        sample_bytes = uniform * count
    else:
        sample_bytes = sum(size for (size,) in p.entries(stsz, 4, "I"))

    offsets = stbl.find(b"stco") or stbl.find(b"co64")
    if offsets is None:
        raise InvalidAudio("MP4 audio track without chunk offsets")
    fmt = "I" if offsets.name == b"stco" else "Q"
    last_chunk = max((off for (off,) in p.entries(offsets, 0, fmt)), default=0)
    if last_chunk >= p.reader.size or sample_bytes > p.reader.size:
        raise InvalidAudio("truncated: MP4 sample data lies beyond the end of the file")
    return ticks, sample_bytes, first_delta


def _apply_edits(p: _Parser, trak: _Box, ticks: int, frame: int, timescale: int,
                 movie_timescale: int) -> int:
    """Decoded ticks once the edit list's priming is skipped and its end applied (ffmpeg
    keeps any frame that starts before the edit's end, whole)."""
    elst = trak.find(b"edts", b"elst")
    if elst is None:
        return ticks
    data = p.small(elst)
    if len(data) < 8:
        raise InvalidAudio("MP4 elst box too short")
    version = data[0]
    fmt = struct.Struct(">Qqhh" if version == 1 else ">Iihh")
    count = struct.unpack_from(">I", data, 4)[0]
    if 8 + count * fmt.size > len(data):
        raise InvalidAudio("MP4 edit list overflows its box")
    for i in range(count):
        seg_duration, media_time, _, _ = fmt.unpack_from(data, 8 + i * fmt.size)
        if media_time < 0:
            continue  # an empty edit: a delay before the track, not samples
        end = ticks
        if seg_duration and movie_timescale:
            edit_end = media_time + seg_duration * timescale // movie_timescale
            if edit_end < end:
                end = -(-edit_end // frame) * frame if frame else edit_end
        return max(0, min(end, ticks) - media_time)
    return ticks


def _fragments(p: _Parser, top: list[_Box], moov: _Box, trak: _Box,
               whole_frames: bool) -> tuple[int, int, int]:
    """(ticks, sample bytes, frame ticks) of the track summed over movie fragments."""
    tkhd = trak.find(b"tkhd")
    if tkhd is None:
        raise InvalidAudio("MP4 track without tkhd")
    t = p.small(tkhd)
    at = 20 if t[:1] == b"\x01" else 12
    if len(t) < at + 4:
        raise InvalidAudio("MP4 tkhd box too short")
    track_id = struct.unpack_from(">I", t, at)[0]
    default_duration = default_size = 0
    mvex = moov.find(b"mvex")
    for trex in mvex.children if mvex else []:
        d = p.small(trex) if trex.name == b"trex" else b""
        if len(d) >= 24 and struct.unpack_from(">I", d, 4)[0] == track_id:
            default_duration, default_size = struct.unpack_from(">II", d, 12)
    ticks = sample_bytes = frame = 0
    last = previous = 0  # durations of the track's last two samples
    for i, moof in enumerate(top):
        if moof.name != b"moof":
            continue
        fragment_bytes = 0
        for traf in moof.children:
            if traf.name != b"traf":
                continue
            tfhd = traf.find(b"tfhd")
            if tfhd is None:
                continue
            h = p.small(tfhd)
            if len(h) < 8:
                raise InvalidAudio("MP4 tfhd box too short")
            flags = int.from_bytes(h[1:4], "big")
            if struct.unpack_from(">I", h, 4)[0] != track_id:
                continue
            pos = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
            duration, size = default_duration, default_size
            if flags & 0x08:
                duration = struct.unpack_from(">I", h, pos)[0] if len(h) >= pos + 4 else 0
                pos += 4
            if flags & 0x10:
                size = struct.unpack_from(">I", h, pos)[0] if len(h) >= pos + 4 else 0
            for trun in traf.children:
                if trun.name == b"trun":
                    run = _trun(p, trun, duration, size)
                    ticks += run.ticks
                    fragment_bytes += run.size
                    if run.count:
                        previous = run.previous if run.count > 1 else last
                        last = run.last
                    frame = frame or duration
        if fragment_bytes:
            mdat = next((b for b in top[i + 1 :] if b.name == b"mdat"), None)
            if mdat is None or fragment_bytes > mdat.size - mdat.header:
                raise InvalidAudio("truncated: an MP4 fragment's samples are missing")
            sample_bytes += fragment_bytes
    if whole_frames and 0 < last < previous:
        ticks += previous - last  # decoders output the short last frame whole
    return ticks, sample_bytes, frame if whole_frames else 0


@dataclass
class _Run:
    ticks: int = 0
    size: int = 0
    count: int = 0
    last: int = 0  # duration of the last sample
    previous: int = 0  # and of the one before it


def _trun(p: _Parser, trun: _Box, default_duration: int, default_size: int) -> _Run:
    """Totals of a track fragment run, streaming its sample table."""
    head = p.reader.pread(trun.body, 8)
    if len(head) < 8:
        raise InvalidAudio("MP4 trun box too short")
    flags = int.from_bytes(head[1:4], "big")
    count = struct.unpack_from(">I", head, 4)[0]
    skip = (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    has_duration, has_size = bool(flags & 0x100), bool(flags & 0x200)
    fields = sum(bool(flags & bit) for bit in (0x100, 0x200, 0x400, 0x800))
    if not fields:
        return _Run(count * default_duration, count * default_size, count,
                    default_duration, default_duration)
    entry = struct.Struct(">" + "I" * fields)
    start = trun.body + 8 + skip
    if count * entry.size > trun.end - start:
        raise InvalidAudio("MP4 trun table overflows its box")
    run = _Run(count=count, last=default_duration, previous=default_duration)
    per_read = max(1, (1 << 16) // entry.size)
    done = 0
    while done < count:
        n = min(per_read, count - done)
        data = p.reader.pread(start + done * entry.size, n * entry.size)
        for values in entry.iter_unpack(data):
            duration = values[0] if has_duration else default_duration
            run.ticks += duration
            run.size += values[int(has_duration)] if has_size else default_size
            run.previous, run.last = run.last, duration
        done += n
    return run
