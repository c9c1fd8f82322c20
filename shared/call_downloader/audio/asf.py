"""ASF (WMA): sniffing and the duration a decoder outputs.

An ASF file is a header object (file and stream properties), a data object of fixed-size
packets carrying payloads of the streams' media objects (one WMA superframe each), and
optional indexes. mutagen's ASF length is the header's claim (play duration minus preroll),
which a recorder that stopped early or a cut file gets wrong. So the packets are walked here,
streaming through the data object in bounded reads: the audio stream's media objects give the
duration, from the presentation time of the first to that of the last plus the last one's
length (its bytes at the stream's average byte rate), less the frame a WMA decoder keeps back,
which is what ffmpeg decodes. The header objects are few fixed layouts read directly.

Checks: a data object, packet or index that runs past the end of the file, a packet count
that does not match the data object, payloads overflowing their packet, or a media object left
incomplete at the end raise InvalidAudio, and so does a header that announces more audio than
the packets hold (a truncated file, or a lying header). A live recording (the broadcast flag:
header duration and packet count unknown) is measured from its packets alone.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from call_downloader.audio.common import (
    AudioInfo,
    BoundedReader,
    InvalidAudio,
    Window,
    check_duration,
)


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


HEADER = _guid("75B22630-668E-11CF-A6D9-00AA0062CE6C")
DATA = _guid("75B22636-668E-11CF-A6D9-00AA0062CE6C")
FILE_PROPERTIES = _guid("8CABDCA1-A947-11CF-8EE4-00C00C205365")
STREAM_PROPERTIES = _guid("B7DC0791-A9B7-11CF-8EE6-00C00C205365")
AUDIO_MEDIA = _guid("F8699E40-5B4D-11CF-A8FD-00805F5C442B")

# Header objects are small (properties, metadata, perhaps cover art): a bound keeps a lying
# size from being read whole.
MAX_HEADER = 16 << 20
MAX_HEADER_OBJECTS = 10_000
# ffmpeg's limits on a packet (asfdec); real files use 1-64 KiB.
MIN_PACKET, MAX_PACKET = 16, 1 << 24
_OBJECT = struct.Struct("<16sQ")

# WAVEFORMATEX format tags -> ffmpeg's codec names.
_CODECS = {
    0x0160: "wmav1", 0x0161: "wmav2", 0x0162: "wmapro", 0x0163: "wmalossless",
    0x000A: "wmavoice", 0x0001: "pcm_s16le", 0x0055: "mp3", 0x0130: "sipr",
}
# Header slack: the header's duration may exceed the packets' by rounding and by the
# encoder's last partial superframe; more than this is audio that is not in the file.
_SLACK_SECONDS, _SLACK_FRACTION = 0.25, 0.01


def sniff(head: bytes) -> bool:
    """The ASF header object first, with a sane size and object count."""
    if len(head) < 30 or head[:16] != HEADER:
        return False
    size, count = struct.unpack_from("<QI", head, 16)
    return 30 < size <= MAX_HEADER and 1 <= count <= MAX_HEADER_OBJECTS


@dataclass
class _Audio:
    number: int
    tag: int
    channels: int
    rate: int
    byte_rate: int


@dataclass
class _Header:
    end: int
    packet_size: int = 0
    packets: int = 0
    play_duration: int = 0  # 100 ns units, preroll included
    preroll_ms: int = 0
    broadcast: bool = False
    audio: _Audio | None = None


def _read_header(reader: BoundedReader) -> _Header:
    head = reader.pread(0, 30)
    if len(head) < 30 or head[:16] != HEADER:
        raise InvalidAudio("no ASF header object")
    size, count = struct.unpack_from("<QI", head, 16)
    if not 30 < size <= MAX_HEADER:
        raise InvalidAudio("implausible ASF header size")
    if size > reader.size:
        raise InvalidAudio("truncated: the file ends inside the ASF header")
    data = reader.pread(0, size)
    header = _Header(end=size)
    seen_file = False
    pos = 30
    for _ in range(min(count, MAX_HEADER_OBJECTS)):
        if pos + 24 > size:
            raise InvalidAudio("an ASF header object overflows the header")
        guid, length = _OBJECT.unpack_from(data, pos)
        if length < 24 or pos + length > size:
            raise InvalidAudio("an ASF header object overflows the header")
        body = data[pos + 24 : pos + length]
        if guid == FILE_PROPERTIES:
            _file_properties(body, header)
            seen_file = True
        elif guid == STREAM_PROPERTIES and header.audio is None:
            header.audio = _stream_properties(body)
        pos += length
    if not seen_file:
        raise InvalidAudio("ASF without file properties")
    if header.audio is None:
        raise InvalidAudio("ASF without an audio stream")
    return header


def _file_properties(body: bytes, header: _Header) -> None:
    if len(body) < 80:
        raise InvalidAudio("ASF file properties too short")
    (header.packets, header.play_duration, _send, header.preroll_ms, flags, low,
     high) = struct.unpack_from("<QQQQIII", body, 32)
    header.broadcast = bool(flags & 1)
    if low != high or not MIN_PACKET <= low <= MAX_PACKET:
        raise InvalidAudio("ASF with variable or implausible packet sizes")
    header.packet_size = low


def _stream_properties(body: bytes) -> _Audio | None:
    if len(body) < 54 or body[:16] != AUDIO_MEDIA:
        return None
    specific = struct.unpack_from("<I", body, 40)[0]
    number = struct.unpack_from("<H", body, 48)[0] & 0x7F
    wave = body[54 : 54 + specific]
    if len(wave) < 16:
        raise InvalidAudio("ASF audio stream without its format")
    tag, channels, rate, byte_rate = struct.unpack_from("<HHII", wave)
    if not 1 <= channels <= 64 or not 1 <= rate <= 1_536_000:
        raise InvalidAudio("ASF audio stream with an implausible format")
    if byte_rate == 0:
        raise InvalidAudio("ASF audio stream without a byte rate")
    return _Audio(number, tag, channels, rate, byte_rate)


@dataclass
class _Objects:
    """The audio stream's media objects seen so far."""

    count: int = 0
    audio_bytes: int = 0
    first_ms: int | None = None
    last_ms: int = 0
    last_size: int = 0
    open_number: int | None = None  # the object being assembled from fragments
    open_size: int = 0
    open_have: int = 0
    open_ms: int = 0

    def whole(self, ms: int, size: int) -> None:
        self.count += 1
        self.audio_bytes += size
        if self.first_ms is None:
            self.first_ms = ms
        self.last_ms, self.last_size = ms, size

    def fragment(self, number: int, offset: int, size: int, ms: int, length: int) -> None:
        if offset == 0 or number != self.open_number:
            if self.open_number is not None and self.open_have < self.open_size:
                raise InvalidAudio("an ASF media object is missing fragments")
            self.open_number, self.open_size, self.open_have = number, size, 0
            self.open_ms = ms
        if offset != self.open_have or offset + length > size:
            raise InvalidAudio("ASF media object fragments do not line up")
        self.open_have += length
        if self.open_have == self.open_size:
            self.whole(self.open_ms, size)
            self.open_number = None


_SIZES = (0, 1, 2, 4)


def _field(buf: bytes, at: int, kind: int) -> tuple[int, int]:
    """(value, next offset) of a variable-width field of width type `kind` (0-3)."""
    width = _SIZES[kind]
    if width == 0:
        return 0, at
    return int.from_bytes(buf[at : at + width], "little"), at + width


def _packet(buf: bytes, rel: int, size: int, stream: int, objects: _Objects) -> None:
    """Record the audio payloads of the packet at `buf[rel:rel+size]`."""
    end = rel + size
    p = rel
    flags = buf[p]
    if flags & 0x80:  # error correction data
        if flags & 0x0F != 2 or flags & 0x60:
            raise InvalidAudio("unsupported ASF error correction data")
        p += 3
        flags = buf[p]
    prop = buf[p + 1]
    p += 2
    length, p = _field(buf, p, (flags >> 5) & 3)
    _seq, p = _field(buf, p, (flags >> 1) & 3)
    padding, p = _field(buf, p, (flags >> 3) & 3)
    p += 6  # send time, duration
    if length and length > size:
        raise InvalidAudio("an ASF packet claims more than the packet size")
    if length:
        padding += size - length  # the unused rest counts as padding too
    data_end = end - padding
    if p > data_end:
        raise InvalidAudio("corrupt ASF packet header")
    multiple = flags & 1
    payloads, length_kind = 1, 0
    if multiple:
        payloads, length_kind = buf[p] & 0x3F, buf[p] >> 6
        p += 1
        if length_kind == 0:
            raise InvalidAudio("corrupt ASF payload flags")
    for _ in range(payloads):
        if p >= data_end:
            raise InvalidAudio("corrupt ASF packet: payloads overflow it")
        number = buf[p] & 0x7F
        p += 1
        obj, p = _field(buf, p, (prop >> 4) & 3)
        offset, p = _field(buf, p, (prop >> 2) & 3)
        replicated, p = _field(buf, p, prop & 3)
        rep_at = p
        p += replicated
        if multiple:
            payload, p = _field(buf, p, length_kind)
        else:
            payload = data_end - p
        if p + payload > data_end or payload < 0:
            raise InvalidAudio("corrupt ASF packet: a payload overflows it")
        if number == stream:
            if replicated == 1:  # compressed: sub-payloads, each a whole object
                delta = buf[rep_at]
                q, ms = p, offset
                while q < p + payload:
                    sub = buf[q]
                    if q + 1 + sub > p + payload:
                        raise InvalidAudio("corrupt ASF compressed payload")
                    objects.whole(ms, sub)
                    q += 1 + sub
                    ms += delta
            elif replicated >= 8:
                size_, ms = struct.unpack_from("<II", buf, rep_at)
                if offset == 0 and payload == size_:
                    if objects.open_number is not None:
                        raise InvalidAudio("an ASF media object is missing fragments")
                    objects.whole(ms, size_)
                else:
                    objects.fragment(obj, offset, size_, ms, payload)
            else:
                raise InvalidAudio("ASF audio payload without a presentation time")
        p += payload


def _check_trailing_objects(reader: BoundedReader, pos: int) -> None:
    """The objects after the data object (indexes) must end where the file ends: one that
    runs past it means the file was cut."""
    for _ in range(MAX_HEADER_OBJECTS):
        if pos >= reader.size:
            return
        head = reader.pread(pos, 24)
        if len(head) < 24:
            raise InvalidAudio("truncated: the file ends inside an ASF object header")
        size = _OBJECT.unpack_from(head)[1]
        if size < 24:
            raise InvalidAudio("invalid ASF object size after the data")
        if pos + size > reader.size:
            raise InvalidAudio("truncated: an ASF index object runs past the end of the file")
        pos += size
    raise InvalidAudio("too many ASF objects after the data")


def _decoder_delay(audio: _Audio) -> float:
    """Seconds of the first media objects a decoder does not output: WMA v1/v2 decoders
    output one frame fewer than they are given (the transform's overlap), a frame being
    512 to 2048 samples by rate (ffmpeg's ff_wma_get_frame_len_bits)."""
    if audio.tag not in (0x0160, 0x0161):
        return 0.0
    version = audio.tag - 0x015F
    if audio.rate <= 16000:
        frame = 512
    elif audio.rate <= 22050 or (audio.rate <= 32000 and version == 1):
        frame = 1024
    else:
        frame = 2048
    return frame / audio.rate


def probe(reader: BoundedReader) -> AudioInfo:
    header = _read_header(reader)
    audio = header.audio
    assert audio is not None
    at = header.end
    head = reader.pread(at, 50)
    if len(head) < 50:
        raise InvalidAudio("truncated: the file ends before the ASF data object")
    if head[:16] != DATA:
        raise InvalidAudio("no ASF data object after the header")
    data_size, packets = struct.unpack_from("<QQ", head, 16)[0], struct.unpack_from(
        "<Q", head, 40)[0]
    start = at + 50
    if data_size == 0 or (header.broadcast and data_size < 50):
        data_end = start + (reader.size - start) // header.packet_size * header.packet_size
    else:
        if data_size < 50:
            raise InvalidAudio("invalid ASF data object size")
        data_end = at + data_size
        if data_end > reader.size:
            raise InvalidAudio(
                f"truncated: the ASF data object declares {data_size} bytes, "
                f"{reader.size - at} present")
    present, rest = divmod(data_end - start, header.packet_size)
    if rest:
        raise InvalidAudio("the ASF data object is not a whole number of packets")
    for announced in (header.packets, packets) if not header.broadcast else ():
        if announced and announced != present:
            raise InvalidAudio(
                f"truncated or corrupt: ASF announces {announced} packets, {present} present")

    _check_trailing_objects(reader, data_end)

    objects = _Objects()
    walker = Window(reader, start, data_end)
    try:
        for index in range(present):
            pos = start + index * header.packet_size
            buf, rel = walker.at(pos, header.packet_size)
            _packet(buf, rel, header.packet_size, audio.number, objects)
    except (IndexError, struct.error) as exc:
        raise InvalidAudio("corrupt ASF packet") from exc
    if objects.open_number is not None:
        raise InvalidAudio("truncated: the last ASF media object is incomplete")
    if objects.first_ms is None:
        raise InvalidAudio("no ASF audio payloads")
    end_ms = objects.last_ms + objects.last_size * 1000 / audio.byte_rate
    seconds = (end_ms - objects.first_ms) / 1000 - _decoder_delay(audio)
    duration = check_duration(seconds)
    if not header.broadcast and header.play_duration:
        announced = header.play_duration / 1e7 - header.preroll_ms / 1000
        if announced > duration + max(_SLACK_SECONDS, _SLACK_FRACTION * duration):
            raise InvalidAudio(
                f"truncated or lying header: ASF announces {announced:.3f} s, "
                f"the packets hold {duration:.3f} s")
    return AudioInfo(
        format="wma",
        codec=_CODECS.get(audio.tag, f"asf_0x{audio.tag:04x}"),
        duration_seconds=duration,
        sample_rate=audio.rate,
        channels=audio.channels,
        bitrate=round(objects.audio_bytes * 8 / duration),
    )
