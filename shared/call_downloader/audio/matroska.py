"""WebM and Matroska audio (Opus, Vorbis): sniffing and the duration a decoder outputs.

A browser's recording (MediaRecorder) has no Duration element, no Cues and Segment and
Cluster sizes left "unknown", so the duration cannot come from a header. It is counted here
from the blocks, streaming through the clusters in bounded reads, the way ffmpeg decodes them:

- Opus: each packet's samples from its TOC byte (frame size x frame count, at 48 kHz); the
  decoder skips the pre-skip of the OpusHead in CodecPrivate (not the CodecDelay element,
  which ffmpeg ignores when decoding) and trims each block's DiscardPadding;
- Vorbis: (previous + current block size) / 4 per packet, the block sizes from the
  identification header and each packet's mode (the setup header's mode flags, found from its
  end as ffmpeg's vorbis parser does); the first packet outputs nothing.

Checks: the EBML header with DocType `webm` or `matroska`; an element (a block included)
running past the end of the file, or a file ending inside an element header, raises
InvalidAudio (truncated), as does a Duration element or a SeekHead entry announcing more than
the file holds. A file cut exactly between two blocks of an unknown-size cluster is a
complete shorter file, as for MP3 or ADTS, unless a Duration element says otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    Window,
    check_duration,
)

EBML = 0x1A45DFA3
DOC_TYPE = 0x4282
SEGMENT = 0x18538067
SEEK_HEAD, SEEK, SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AC
INFO, TIMESTAMP_SCALE, DURATION = 0x1549A966, 0x2AD7B1, 0x4489
TRACKS, TRACK_ENTRY = 0x1654AE6B, 0xAE
TRACK_NUMBER, TRACK_TYPE, CODEC_ID, CODEC_PRIVATE = 0xD7, 0x83, 0x86, 0x63A2
AUDIO, SAMPLING_FREQUENCY, CHANNELS = 0xE1, 0xB5, 0x9F
CONTENT_ENCODINGS = 0x6D80
CLUSTER, CLUSTER_TIMESTAMP = 0x1F43B675, 0xE7
SIMPLE_BLOCK, BLOCK_GROUP, BLOCK, DISCARD_PADDING = 0xA3, 0xA0, 0xA1, 0x75A2
# Children of a Segment: an unknown-size Cluster ends where one of these starts.
_TOP_LEVEL = frozenset({SEEK_HEAD, INFO, TRACKS, CLUSTER, 0x1C53BB6B, 0x1254C367, 0x1043A770,
                        0x1941A469, EBML, SEGMENT})
_AUDIO_TRACK = 2
DOC_TYPES = {b"webm": "webm", b"matroska": "mka"}

MAX_EBML_HEADER = 4096
# Headers read whole (Info, Tracks with a Vorbis setup header, SeekHead).
MAX_SMALL_ELEMENT = 1 << 20
MAX_LACED_FRAMES = 256
_UNKNOWN = -1
# Duration slack: the element rounds to the timestamp scale and may count the last block's
# padding; more than this is audio that is not in the file.
_SLACK_SECONDS, _SLACK_FRACTION = 0.25, 0.01


def _vint(buf: bytes, at: int, keep_marker: bool, limit: int | None = None
          ) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-size integer at `buf[at]`; None if `buf` (or
    `limit`, an index into it) ends first. A size of all ones is returned as _UNKNOWN."""
    limit = len(buf) if limit is None else min(limit, len(buf))
    if at >= limit:
        return None
    first = buf[at]
    if first == 0:
        raise InvalidAudio("corrupt Matroska element")
    length = 9 - first.bit_length()
    if at + length > limit:
        return None
    value = int.from_bytes(buf[at : at + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    if value == (1 << (7 * length)) - 1:
        return _UNKNOWN, length
    return value, length


def _header(buf: bytes, at: int, limit: int | None = None) -> tuple[int, int, int] | None:
    """(id, size or _UNKNOWN, header length) of the element at `buf[at]`; None when `buf`
    (or `limit`) ends inside the header."""
    end = len(buf) if limit is None else min(limit, len(buf))
    if at + 3 <= end and buf[at] & 0x80:  # one-byte ID (blocks): the usual case in clusters
        first = buf[at + 1]
        if first & 0x80:
            return buf[at], (_UNKNOWN if first == 0xFF else first & 0x7F), 2
        if first & 0x40:
            size = (first & 0x3F) << 8 | buf[at + 2]
            return buf[at], (_UNKNOWN if size == 0x3FFF else size), 3
    ident = _vint(buf, at, True, limit)
    if ident is None:
        return None
    if ident[1] > 4:
        raise InvalidAudio("corrupt Matroska element ID")
    size = _vint(buf, at + ident[1], False, limit)
    if size is None:
        return None
    return ident[0], size[0], ident[1] + size[1]


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of the elements of a small master element held in memory."""
    out = []
    pos = 0
    while pos < len(data):
        h = _header(data, pos)
        if h is None or h[1] == _UNKNOWN or pos + h[2] + h[1] > len(data):
            raise InvalidAudio("corrupt Matroska header element")
        out.append((h[0], data[pos + h[2] : pos + h[2] + h[1]]))
        pos += h[2] + h[1]
    return out


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big") if len(data) <= 8 else 0


def _float(data: bytes) -> float:
    if len(data) == 4:
        return float(struct.unpack(">f", data)[0])
    if len(data) == 8:
        return float(struct.unpack(">d", data)[0])
    return 0.0


def _doc_type(head: bytes) -> str | None:
    h = _header(head, 0)
    if h is None or h[0] != EBML or h[1] == _UNKNOWN or h[1] > MAX_EBML_HEADER:
        return None
    body = head[h[2] : h[2] + h[1]]
    if len(body) < h[1]:
        return None
    try:
        children = _children(body)
    except InvalidAudio:
        return None
    doc = next((v for k, v in children if k == DOC_TYPE), b"").rstrip(b"\0")
    return DOC_TYPES.get(doc)


def sniff(head: bytes) -> str | None:
    """"webm" or "mka" when `head` starts with an EBML header naming that DocType."""
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return None
    try:
        return _doc_type(head)
    except InvalidAudio:
        return None


# --- codecs ---------------------------------------------------------------------------------

_OPUS_FRAME = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4


def opus_samples(b0: int, b1: int | None) -> int:
    """48 kHz samples of the Opus packet starting with bytes b0 (TOC) and b1 (RFC 6716 3.1);
    0 for a packet a decoder refuses (no frames, over 120 ms)."""
    code = b0 & 3
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    else:
        frames = (b1 or 0) & 0x3F
    samples = _OPUS_FRAME[b0 >> 3] * frames
    return samples if 0 < samples <= 5760 else 0


@dataclass
class _Vorbis:
    block_sizes: tuple[int, int]
    mode_long: list[bool]  # each mode's block flag
    started: bool = False  # a packet was decoded before
    previous_long: bool = False  # the block size of the packet before

    @property
    def mode_bits(self) -> int:
        return (len(self.mode_long) - 1).bit_length()

    def samples(self, b0: int) -> int:
        """Samples the decoder outputs for the audio packet whose first byte is b0."""
        if b0 & 1:
            return 0  # not an audio packet: the decoder rejects it
        mode = (b0 >> 1) & ((1 << self.mode_bits) - 1)
        if mode >= len(self.mode_long):
            return 0
        long_block = self.mode_long[mode]
        # A long block names the previous window's size in the bit after the mode; a short
        # one overlaps with whatever came before (ffmpeg's vorbisdec).
        previous = bool((b0 >> (1 + self.mode_bits)) & 1) if long_block else self.previous_long
        self.previous_long = long_block
        if not self.started:
            self.started = True
            return 0  # the first packet only primes the overlap
        return (self.block_sizes[long_block] + self.block_sizes[previous]) // 4


def _xiph_headers(private: bytes) -> list[bytes]:
    """The three Vorbis headers of a Matroska CodecPrivate (Xiph lacing)."""
    if not private or private[0] != 2:
        raise InvalidAudio("Matroska Vorbis track without its three headers")
    pos, sizes = 1, []
    for _ in range(2):
        size = 0
        while pos < len(private) and private[pos] == 255:
            size += 255
            pos += 1
        if pos >= len(private):
            raise InvalidAudio("corrupt Matroska Vorbis headers")
        size += private[pos]
        pos += 1
        sizes.append(size)
    if pos + sum(sizes) > len(private):
        raise InvalidAudio("corrupt Matroska Vorbis headers")
    first, second = pos, pos + sizes[0]
    return [private[first:second], private[second : second + sizes[1]],
            private[second + sizes[1] :]]


def _vorbis(private: bytes) -> tuple[_Vorbis, int, int]:
    """(parser, sample rate, channels) from a Vorbis CodecPrivate."""
    ident, _comment, setup = _xiph_headers(private)
    if len(ident) < 30 or ident[:7] != b"\x01vorbis":
        raise InvalidAudio("no Vorbis identification header")
    channels, rate = ident[11], struct.unpack_from("<I", ident, 12)[0]
    small, large = 1 << (ident[28] & 0x0F), 1 << (ident[28] >> 4)
    if not 64 <= small <= large <= 8192:
        raise InvalidAudio("invalid Vorbis block sizes")
    return _Vorbis((small, large), _vorbis_modes(setup)), rate, channels


def _vorbis_modes(setup: bytes) -> list[bool]:
    """Each mode's block flag, read backwards from the end of the setup header: modes are
    its last fields (flag, two 16-bit zeros, 8-bit mapping, then the framing bit), preceded
    by their count; everything before them would need a whole Vorbis parser."""
    if len(setup) < 7 or setup[:7] != b"\x05vorbis":
        raise InvalidAudio("no Vorbis setup header")
    bits = int.from_bytes(setup, "little")  # bit i of the stream is bit i of this number
    total = len(setup) * 8
    pos = total - 1
    while pos >= 7 * 8 and not bits >> pos & 1:
        pos -= 1  # up to the framing bit
    if pos < 7 * 8 + 97:
        raise InvalidAudio("invalid Vorbis setup header")

    def field(end: int, width: int) -> int:
        return (bits >> (end - width)) & ((1 << width) - 1)

    end = pos  # modes end just before the framing bit
    candidates = 0
    count = 0
    while end - 41 >= 7 * 8 + 6 and count < 64:
        mapping = field(end, 8)
        if mapping > 63 or field(end - 8, 16) or field(end - 24, 16):
            break
        count += 1
        end -= 41
        if field(end, 6) + 1 == count:
            candidates = count
    if not candidates:
        raise InvalidAudio("invalid Vorbis setup header")
    return [bool(bits >> (pos - 41 * (candidates - i)) & 1) for i in range(candidates)]


def _opus(private: bytes) -> tuple[int, int]:
    """(pre-skip, channels) from an OpusHead CodecPrivate."""
    if len(private) < 19 or private[:8] != b"OpusHead":
        raise InvalidAudio("Matroska Opus track without an OpusHead")
    return struct.unpack_from("<H", private, 10)[0], private[9]


# --- the file ---------------------------------------------------------------------------------


@dataclass
class _Track:
    number: int
    codec: str
    rate: int
    channels: int
    pre_skip: int = 0
    vorbis: _Vorbis | None = None


@dataclass
class _Count:
    samples: int = 0
    blocks: int = 0
    audio_bytes: int = 0
    first_ts: int | None = None
    last_ts: int = -(1 << 62)  # the latest block's timestamp, and its samples
    last_samples: int = 0
    seek_targets: list[int] = field(default_factory=list)


class _Walker:
    def __init__(self, reader: BoundedReader) -> None:
        self.reader = reader
        self.window = Window(reader, 0, reader.size)
        self.scale = 1_000_000
        self.duration: float | None = None
        self.track: _Track | None = None
        self.count = _Count()

    def header_at(self, pos: int, end: int) -> tuple[int, int, int]:
        buf, rel = self.window.at(pos, 12)
        h = _header(buf, rel, rel + max(0, end - pos))
        if h is None:
            raise InvalidAudio("truncated: the file ends inside a Matroska element header")
        return h

    def small(self, pos: int, size: int) -> bytes:
        if size > MAX_SMALL_ELEMENT:
            raise InvalidAudio("a Matroska header element is implausibly large")
        return self.reader.pread(pos, size)

    def segment(self, start: int, end: int, unknown: bool) -> None:
        pos = start
        while pos < end:
            ident, size, hlen = self.header_at(pos, end)
            body = pos + hlen
            if size == _UNKNOWN:
                if ident != CLUSTER:
                    raise InvalidAudio("a Matroska element of unknown size")
                pos = self.cluster(body, end, unknown_size=True)
                continue
            if body + size > end:
                raise InvalidAudio(
                    "truncated: a Matroska element runs past the end of the "
                    + ("file" if unknown or end == self.reader.size else "segment"))
            if ident == CLUSTER:
                self.cluster(body, body + size, unknown_size=False)
            elif ident == INFO:
                self.info(self.small(body, size))
            elif ident == TRACKS:
                if self.track is None:
                    self.tracks(self.small(body, size))
            elif ident == SEEK_HEAD:
                self.seek_head(self.small(body, size), start)
            elif ident in (EBML, SEGMENT):
                break  # a second segment (chained files): the first one is the recording
            pos = body + size

    def info(self, data: bytes) -> None:
        for ident, value in _children(data):
            if ident == TIMESTAMP_SCALE and _uint(value):
                self.scale = _uint(value)
            elif ident == DURATION:
                self.duration = _float(value)

    def seek_head(self, data: bytes, segment_start: int) -> None:
        for ident, seek in _children(data):
            if ident == SEEK:
                for key, value in _children(seek):
                    if key == SEEK_POSITION:
                        self.count.seek_targets.append(segment_start + _uint(value))

    def tracks(self, data: bytes) -> None:
        for ident, entry in _children(data):
            if ident != TRACK_ENTRY:
                continue
            fields = dict(_children(entry))
            if _uint(fields.get(TRACK_TYPE, b"")) != _AUDIO_TRACK:
                continue
            if CONTENT_ENCODINGS in fields:
                raise InvalidAudio("compressed or encrypted Matroska audio is not supported")
            codec = fields.get(CODEC_ID, b"").rstrip(b"\0").decode("ascii", "replace")
            audio = dict(_children(fields.get(AUDIO, b"")))
            number = _uint(fields.get(TRACK_NUMBER, b""))
            private = fields.get(CODEC_PRIVATE, b"")
            if codec == "A_OPUS":
                pre_skip, channels = _opus(private)
                self.track = _Track(number, "opus", 48000, channels, pre_skip=pre_skip)
            elif codec == "A_VORBIS":
                vorbis, rate, channels = _vorbis(private)
                self.track = _Track(number, "vorbis", rate, channels, vorbis=vorbis)
            else:
                raise InvalidAudio(f"Matroska audio codec {codec[:40]!r} is not supported")
            if not self.track.channels:
                self.track.channels = _uint(audio.get(CHANNELS, b""))
            if not self.track.rate:
                self.track.rate = round(_float(audio.get(SAMPLING_FREQUENCY, b"")))
            return
        raise InvalidAudio("Matroska without an audio track")

    def cluster(self, start: int, end: int, unknown_size: bool) -> int:
        """Count the blocks of the cluster at [start, end); returns where it ends (for an
        unknown-size cluster: at the next top-level element, or `end`)."""
        if self.track is None:
            raise InvalidAudio("Matroska clusters before the tracks")
        timestamp = 0
        pos = start
        while pos < end:
            ident, size, hlen = self.header_at(pos, end)
            if unknown_size and ident in _TOP_LEVEL:
                return pos
            body = pos + hlen
            if size == _UNKNOWN:
                raise InvalidAudio("a Matroska element of unknown size inside a cluster")
            if body + size > end:
                raise InvalidAudio("truncated: a Matroska block runs past the end of the "
                                   + ("file" if end == self.reader.size else "cluster"))
            if ident == CLUSTER_TIMESTAMP:
                timestamp = _uint(self.reader.pread(body, min(size, 8)))
            elif ident == SIMPLE_BLOCK:
                self.block(body, size, timestamp, 0)
            elif ident == BLOCK_GROUP:
                self.block_group(body, size, timestamp)
            pos = body + size
        return end

    def block_group(self, start: int, size: int, timestamp: int) -> None:
        block: tuple[int, int] | None = None
        discard = 0
        pos, end = start, start + size
        while pos < end:
            ident, length, hlen = self.header_at(pos, end)
            if length == _UNKNOWN or pos + hlen + length > end:
                raise InvalidAudio("corrupt Matroska block group")
            if ident == BLOCK:
                block = (pos + hlen, length)
            elif ident == DISCARD_PADDING:
                raw = self.reader.pread(pos + hlen, min(length, 8))
                discard = int.from_bytes(raw, "big", signed=True)
            pos += hlen + length
        if block is not None:
            self.block(block[0], block[1], timestamp, discard)

    def block(self, start: int, size: int, cluster_ts: int, discard_ns: int) -> None:
        track = self.track
        assert track is not None
        buf, rel = self.window.at(start, min(size, 16))
        if size >= 4 and buf[rel] & 0x80:  # a track number below 128: one byte
            number, at = buf[rel] & 0x7F, 1
        else:
            head = buf[rel : rel + min(size, 16)]
            parsed = _vint(head, 0, keep_marker=False)
            if parsed is None or size < parsed[1] + 3:
                raise InvalidAudio("corrupt Matroska block")
            number, at = parsed
        if number != track.number:
            return
        timecode = int.from_bytes(buf[rel + at : rel + at + 2], "big", signed=True)
        lacing = (buf[rel + at + 2] >> 1) & 3
        at += 3
        samples = 0
        if lacing == 0:  # one frame, its first bytes already in the buffer
            if size > at:
                b0 = buf[rel + at]
                samples = (opus_samples(b0, buf[rel + at + 1] if size > at + 1 else None)
                           if track.vorbis is None else track.vorbis.samples(b0))
        else:
            buf, rel = self.window.at(start, min(size, 64 + 4 * MAX_LACED_FRAMES))
            first, sizes = self._frame_sizes(buf[rel : rel + size], at, size, lacing)
            pos = start + first
            for frame in sizes:
                if frame:
                    head, off = self.window.at(pos, 2)
                    b0 = head[off]
                    b1 = head[off + 1] if frame > 1 else None
                    samples += (opus_samples(b0, b1) if track.vorbis is None
                                else track.vorbis.samples(b0))
                pos += frame
        if discard_ns > 0:
            samples -= min(samples, discard_ns * track.rate // 1_000_000_000)
        count = self.count
        count.samples += samples
        count.blocks += 1
        count.audio_bytes += size
        ts = cluster_ts + timecode
        if count.first_ts is None:
            count.first_ts = ts
        if ts >= count.last_ts:
            count.last_ts, count.last_samples = ts, samples

    @staticmethod
    def _frame_sizes(data: bytes, at: int, size: int, lacing: int) -> tuple[int, list[int]]:
        """(offset of the first frame in the block, frame sizes) for the block's lacing."""
        if lacing == 0:
            return at, [size - at]
        if at >= len(data):
            raise InvalidAudio("corrupt Matroska block lacing")
        count = data[at] + 1
        at += 1
        sizes: list[int] = []
        if lacing == 2:  # fixed
            if (size - at) % count:
                raise InvalidAudio("corrupt Matroska block lacing")
            return at, [(size - at) // count] * count
        if lacing == 1:  # Xiph
            for _ in range(count - 1):
                value = 0
                while True:
                    if at >= len(data):
                        raise InvalidAudio("corrupt Matroska block lacing")
                    value += data[at]
                    at += 1
                    if data[at - 1] != 255:
                        break
                sizes.append(value)
        else:  # EBML
            first = _vint(data, at, keep_marker=False)
            if first is None or first[0] == _UNKNOWN:
                raise InvalidAudio("corrupt Matroska block lacing")
            sizes.append(first[0])
            at += first[1]
            for _ in range(count - 2):
                delta = _vint(data, at, keep_marker=False)
                if delta is None or delta[0] == _UNKNOWN:
                    raise InvalidAudio("corrupt Matroska block lacing")
                sizes.append(sizes[-1] + delta[0] - ((1 << (7 * delta[1] - 1)) - 1))
                at += delta[1]
        last = size - at - sum(sizes)
        if last < 0 or any(s < 0 for s in sizes):
            raise InvalidAudio("corrupt Matroska block lacing")
        return at, [*sizes, last]


def probe(reader: BoundedReader, fmt: str) -> AudioInfo:
    walker = _Walker(reader)
    ident, size, hlen = walker.header_at(0, reader.size)
    if ident != EBML or size == _UNKNOWN or size > MAX_EBML_HEADER:
        raise InvalidAudio("no EBML header")
    if hlen + size > reader.size:
        raise InvalidAudio("truncated: the file ends inside the EBML header")
    if _doc_type(reader.pread(0, hlen + size)) is None:
        raise InvalidAudio("not a WebM or Matroska file")
    pos = hlen + size
    while True:  # the Segment, after any Void elements
        if pos >= reader.size:
            raise InvalidAudio("truncated: Matroska without a segment")
        ident, size, hlen = walker.header_at(pos, reader.size)
        if ident == SEGMENT:
            break
        if ident != 0xEC or size == _UNKNOWN:
            raise InvalidAudio("no Matroska segment after the EBML header")
        pos += hlen + size
    start = pos + hlen
    unknown = size == _UNKNOWN
    end = reader.size if unknown else start + size
    if end > reader.size:
        raise InvalidAudio(
            f"truncated: the Matroska segment declares {size} bytes, "
            f"{reader.size - start} present")
    walker.segment(start, end, unknown)

    track, count = walker.track, walker.count
    if track is None:
        raise InvalidAudio("Matroska without an audio track")
    if any(target >= reader.size for target in count.seek_targets):
        raise InvalidAudio("truncated: the Matroska SeekHead points past the end of the file")
    samples = count.samples - track.pre_skip
    duration = check_duration(samples / track.rate)
    if walker.duration is not None and count.first_ts is not None:
        announced = walker.duration * walker.scale / 1e9
        present = ((count.last_ts - count.first_ts) * walker.scale / 1e9
                   + count.last_samples / track.rate)
        if announced > present + max(_SLACK_SECONDS, _SLACK_FRACTION * present):
            raise InvalidAudio(
                f"truncated or lying header: the Matroska Duration is {announced:.3f} s, "
                f"the blocks hold {present:.3f} s")
    return AudioInfo(
        format=fmt,
        codec=track.codec,
        duration_seconds=duration,
        sample_rate=track.rate,
        channels=track.channels or None,
        bitrate=round(count.audio_bytes * 8 / duration),
    )
