"""The formats call sources hand out beyond the classic ones: WebM/Matroska (Opus, Vorbis) as
browsers and WebRTC platforms record, WMA (ASF) from Windows PBXs, AMR-NB/WB from phones (raw
and in 3GP). Every fixture kind's duration against a full decode is in test_audio_probe; here
are the format-specific rules (what a decoder skips or trims, what a browser leaves out) and
the lies and cuts each format allows, each against ffmpeg's reading of the same bytes."""

from __future__ import annotations

import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from audio_fixtures import ffmpeg_duration, make_fixture
from audio_probe_helpers import rejected, write

from call_downloader.audio import amr, asf, probe_file, sniff_file, sniff_format


def encoded(path: Path, source: str, *args: str) -> Path:
    """`path` written by ffmpeg from a lavfi `source` with output options `args`."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source,
                    *args, str(path)], check=True, timeout=120)
    return path


def measured_as_decoded(path: Path) -> float:
    """The probe's duration, checked against a full decode to within a millisecond."""
    got = probe_file(path).duration_seconds
    assert got == pytest.approx(ffmpeg_duration(path), abs=0.001)
    return got


# --- EBML helpers (test side) ----------------------------------------------------------------


def elements(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(id, element start, payload start, payload end) of the known-size elements in range."""
    out, pos = [], start
    while pos < end:
        id_len = 9 - data[pos].bit_length()
        size_len = 9 - data[pos + id_len].bit_length()
        size = int.from_bytes(data[pos + id_len : pos + id_len + size_len], "big") & (
            (1 << (7 * size_len)) - 1)
        body = pos + id_len + size_len
        out.append((int.from_bytes(data[pos : pos + id_len], "big"), pos, body, body + size))
        pos = body + size
    return out


def find(data: bytes, *path: int) -> tuple[int, int, int, int]:
    """The first element along `path` of ids, from the top of a file with known sizes."""
    start, end = 0, len(data)
    found = None
    for ident in path:
        found = next(e for e in elements(data, start, end) if e[0] == ident)
        start, end = found[2], found[3]
    assert found is not None
    return found


SEGMENT, INFO, DURATION, TRACKS, TRACK_ENTRY = 0x18538067, 0x1549A966, 0x4489, 0x1654AE6B, 0xAE
CODEC_PRIVATE, CODEC_DELAY, CLUSTER, SIMPLE_BLOCK = 0x63A2, 0x56AA, 0x1F43B675, 0xA3
BLOCK_GROUP, DISCARD_PADDING, CUES, VOID = 0xA0, 0x75A2, 0x1C53BB6B, 0xEC


# --- WebM / Matroska ---------------------------------------------------------------------------


def test_the_browser_fixture_is_shaped_like_a_browser_recording() -> None:
    # Guards the fixture: nothing in it states the duration, and every block is a SimpleBlock.
    data = make_fixture("webm_opus_browser").read_bytes()
    seg = data.index(b"\x18\x53\x80\x67")
    assert data[seg + 4 : seg + 12] == b"\x01" + b"\xff" * 7  # unknown-size segment
    assert data.count(b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff") >= 2  # clusters
    info = data.index(b"\x15\x49\xa9\x66")
    assert b"\x44\x89" not in data[info : data.index(b"\x16\x54\xae\x6b")]  # no Duration
    assert b"\x1c\x53\xbb\x6b" not in data  # no Cues
    assert probe_file(make_fixture("webm_opus_browser")).format == "webm"


def test_opus_pre_skip_comes_from_the_opus_head_not_codec_delay(tmp_path: Path) -> None:
    data = make_fixture("webm_opus").read_bytes()
    base = measured_as_decoded(make_fixture("webm_opus"))
    private = find(data, SEGMENT, TRACKS, TRACK_ENTRY, CODEC_PRIVATE)
    assert data[private[2] : private[2] + 8] == b"OpusHead"
    pre_skip = struct.unpack_from("<H", data, private[2] + 10)[0]
    more = bytearray(data)
    struct.pack_into("<H", more, private[2] + 10, pre_skip + 4800)  # 0.1 s more skipped
    got = measured_as_decoded(write(tmp_path, "skip.webm", bytes(more)))
    assert got == pytest.approx(base - 0.1, abs=1e-6)
    # CodecDelay restates the pre-skip for players; ffmpeg's decode ignores it, and so do we.
    delay = find(data, SEGMENT, TRACKS, TRACK_ENTRY, CODEC_DELAY)
    no_delay = bytearray(data)
    no_delay[delay[2] : delay[3]] = bytes(delay[3] - delay[2])
    assert measured_as_decoded(write(tmp_path, "nodelay.webm", bytes(no_delay))) == base


def test_discard_padding_trims_the_last_block(tmp_path: Path) -> None:
    data = make_fixture("webm_opus").read_bytes()
    base = measured_as_decoded(make_fixture("webm_opus"))
    groups = [e for c in elements(data, *find(data, SEGMENT)[2:])
              if c[0] == CLUSTER for e in elements(data, c[2], c[3]) if e[0] == BLOCK_GROUP]
    padding = next(e for e in elements(data, groups[-1][2], groups[-1][3])
                   if e[0] == DISCARD_PADDING)
    trimmed_ns = int.from_bytes(data[padding[2] : padding[3]], "big")
    assert trimmed_ns > 0
    changed = bytearray(data)
    changed[padding[2] : padding[3]] = bytes(padding[3] - padding[2])
    got = measured_as_decoded(write(tmp_path, "untrimmed.webm", bytes(changed)))
    assert got == pytest.approx(base + round(trimmed_ns * 48000 / 1e9) / 48000, abs=1e-6)


def _with_duration(data: bytes, seconds: float) -> bytes:
    duration = find(data, SEGMENT, INFO, DURATION)
    changed = bytearray(data)
    assert duration[3] - duration[2] == 8
    struct.pack_into(">d", changed, duration[2], seconds * 1000)  # TimestampScale 1 ms
    return bytes(changed)


def test_webm_duration_element_announcing_more_than_the_blocks(tmp_path: Path) -> None:
    data = make_fixture("webm_opus").read_bytes()
    real = probe_file(make_fixture("webm_opus")).duration_seconds
    reason = rejected(write(tmp_path, "long.webm", _with_duration(data, real * 2)))
    assert "Duration" in reason
    # A Duration shorter than the blocks is not believed either: the blocks are measured.
    short = write(tmp_path, "short.webm", _with_duration(data, real / 2))
    assert measured_as_decoded(short) == real


def test_webm_segment_size_lying_or_cut(tmp_path: Path) -> None:
    data = make_fixture("webm_vorbis").read_bytes()
    seg = data.index(b"\x18\x53\x80\x67")
    longer = bytearray(data)
    size = int.from_bytes(data[seg + 5 : seg + 12], "big")
    longer[seg + 5 : seg + 12] = (size + 5000).to_bytes(7, "big")
    assert "truncated" in rejected(write(tmp_path, "a.webm", bytes(longer)))


def test_seek_head_pointing_past_the_end(tmp_path: Path) -> None:
    # A recording of unknown segment size cut exactly before its Cues: the blocks are all
    # there, but the SeekHead says the file went on.
    original = make_fixture("webm_opus").read_bytes()
    cues = find(original, SEGMENT, CUES)[1]
    data = bytearray(original)
    seg = data.index(b"\x18\x53\x80\x67")
    data[seg + 4 : seg + 12] = b"\x01" + b"\xff" * 7
    assert "SeekHead" in rejected(write(tmp_path, "a.webm", bytes(data[:cues])))


def _browser_blocks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every SimpleBlock element of the browser fixture."""
    starts = []
    pos = data.index(b"\x1f\x43\xb6\x75")
    while pos < len(data):
        if data[pos : pos + 4] == b"\x1f\x43\xb6\x75":
            pos += 12  # cluster header of unknown size
            continue
        (ident, start, _, end), = elements(data, pos, pos + 1)[:1]
        if ident == SIMPLE_BLOCK:
            starts.append((start, end))
        pos = end
    return starts


def test_browser_webm_cut_between_blocks_and_inside_one(tmp_path: Path) -> None:
    data = make_fixture("webm_opus_browser").read_bytes()
    blocks = _browser_blocks(data)
    middle_start, middle_end = blocks[len(blocks) // 2]
    # Cut between two blocks: a complete, shorter recording, measured as ffmpeg decodes it.
    shorter = measured_as_decoded(write(tmp_path, "between.webm", data[:middle_start]))
    assert 0 < shorter < probe_file(make_fixture("webm_opus_browser")).duration_seconds
    # Cut inside the block or its header: truncated.
    for cut in (middle_start + 1, middle_start + 11, middle_end - 1):
        assert "truncated" in rejected(write(tmp_path, f"cut{cut}.webm", data[:cut]))


def _laced(data: bytes, lacing: str) -> bytes:
    """The browser fixture with its SimpleBlocks laced in pairs (Xiph or EBML lacing)."""
    blocks = _browser_blocks(data)
    out = bytearray(data[: blocks[0][0]])
    pos = blocks[0][0]
    pairs: list[list[tuple[int, int]]] = []
    for block in blocks:  # neighbours in one cluster, in pairs
        if pairs and len(pairs[-1]) == 1 and pairs[-1][0][1] == block[0]:
            pairs[-1].append(block)
        else:
            pairs.append([block])
    for pair in pairs:
        first_start = pair[0][0]
        out += data[pos:first_start]  # cluster headers and timestamps in between
        frames = []
        header = b""
        for start, end in pair:
            body = elements(data, start, end)[0][2]
            track_len = 9 - data[body].bit_length()
            header = header or data[body : body + track_len + 3]
            frames.append(data[body + track_len + 3 : end])
        pos = pair[-1][1]
        if len(frames) == 1:
            out += data[first_start:pos]
            continue
        flags = header[-1] | (0x02 if lacing == "xiph" else 0x06)
        size = len(frames[0])
        if lacing == "xiph":
            lace = bytes([255] * (size // 255) + [size % 255])
        else:
            lace = (0x4000 | size).to_bytes(2, "big")  # 2-byte EBML vint
        payload = header[:-1] + bytes([flags, len(frames) - 1]) + lace + b"".join(frames)
        out += b"\xa3" + (0x01 << 56 | len(payload)).to_bytes(8, "big") + payload
    out += data[pos:]
    return bytes(out)


@pytest.mark.parametrize("lacing", ["xiph", "ebml"])
def test_laced_blocks_count_every_frame(lacing: str, tmp_path: Path) -> None:
    data = make_fixture("webm_opus_browser").read_bytes()
    laced = write(tmp_path, f"{lacing}.webm", _laced(data, lacing))
    assert len(_browser_blocks(laced.read_bytes())) < len(_browser_blocks(data)) * 0.6
    whole = probe_file(make_fixture("webm_opus_browser")).duration_seconds
    assert measured_as_decoded(laced) == whole


@pytest.mark.parametrize(("name", "source", "args", "fmt", "reason"), [
    ("aac.mka", "sine=frequency=440:duration=2", ("-c:a", "aac", "-f", "matroska"), "mka",
     "A_AAC"),  # Matroska with a codec other than Opus or Vorbis
    ("video.wmv", "testsrc=size=64x48:duration=1", ("-c:v", "wmv2", "-f", "asf"), "wma",
     "audio"),  # ASF without an audio stream
])
def test_containers_without_a_supported_audio_track_fail_with_a_reason(
        name: str, source: str, args: tuple[str, ...], fmt: str, reason: str,
        tmp_path: Path) -> None:
    path = encoded(tmp_path / name, source, *args)
    assert sniff_file(path) == fmt
    assert reason in rejected(path)


def test_vorbis_setup_header_damage_is_invalid_audio(tmp_path: Path) -> None:
    data = bytearray(make_fixture("mka_vorbis_8k").read_bytes())
    private = find(bytes(data), SEGMENT, TRACKS, TRACK_ENTRY, CODEC_PRIVATE)
    data[private[3] - 40 : private[3]] = bytes(40)  # the modes at the end of the setup header
    rejected(write(tmp_path, "a.mka", bytes(data)))


def test_ebml_sniffing() -> None:
    head = make_fixture("webm_opus").read_bytes()[:200]
    assert sniff_format(head) == "webm"
    assert sniff_format(head.replace(b"\x42\x82\x84webm", b"\x42\x82\x84wxyz")) is None
    assert sniff_format(head[:20]) is None  # the EBML header cut short
    assert sniff_format(b"\x1a\x45\xdf\xa3" + b"\xff" * 100) is None


# --- WMA (ASF) -------------------------------------------------------------------------------


def _file_properties(data: bytes) -> int:
    """Offset of the File Properties object's payload."""
    return data.index(asf.FILE_PROPERTIES) + 24


def test_wma_header_announcing_more_than_the_packets(tmp_path: Path) -> None:
    data = bytearray(make_fixture("wma_v1_8k").read_bytes())
    at = _file_properties(bytes(data))
    play = struct.unpack_from("<Q", data, at + 40)[0]
    struct.pack_into("<Q", data, at + 40, play * 3)
    assert "announces" in rejected(write(tmp_path, "a.wma", bytes(data)))


def test_wma_packet_count_lying(tmp_path: Path) -> None:
    data = bytearray(make_fixture("wma_v1_8k").read_bytes())
    at = _file_properties(bytes(data))
    packets = struct.unpack_from("<Q", data, at + 32)[0]
    struct.pack_into("<Q", data, at + 32, packets + 10)
    assert "packets" in rejected(write(tmp_path, "a.wma", bytes(data)))


def test_wma_live_recording_is_measured_from_its_packets(tmp_path: Path) -> None:
    # The broadcast flag: header duration and packet counts are unknown (zero); the packets
    # alone give the duration.
    data = bytearray(make_fixture("wma_v2").read_bytes())
    at = _file_properties(bytes(data))
    struct.pack_into("<QQ", data, at + 32, 0, 0)  # packet count, play duration
    struct.pack_into("<I", data, at + 64, 1)  # flags: broadcast
    data_object = bytes(data).index(asf.DATA)
    struct.pack_into("<Q", data, data_object + 40, 0)
    live = write(tmp_path, "live.wma", bytes(data))
    assert measured_as_decoded(live) == probe_file(make_fixture("wma_v2")).duration_seconds


def test_wma_cut_on_a_packet_boundary_is_still_a_truncation(tmp_path: Path) -> None:
    data = make_fixture("wma_v2").read_bytes()
    packet = struct.unpack_from("<I", data, _file_properties(data) + 68)[0]
    start = data.index(asf.DATA) + 50
    cut = start + (len(data) - start) // packet // 2 * packet
    assert "truncated" in rejected(write(tmp_path, "a.wma", data[:cut]))


def test_wma_payload_overflowing_its_packet(tmp_path: Path) -> None:
    data = bytearray(make_fixture("wma_v1_8k").read_bytes())
    packet = bytes(data).index(asf.DATA) + 50
    # ffmpeg's packet layout: error correction (82 00 00), length type flags 0x09 (multiple
    # payloads, a padding byte), property flags 0x5d, padding, send time, duration, payload
    # flags; then the first payload: stream, object, offset (4), replicated data (1 + 8), and
    # its 16-bit length, here made to claim far more than the packet.
    assert data[packet : packet + 5] == b"\x82\x00\x00\x09\x5d"
    length_at = packet + 5 + 1 + 6 + 1 + 1 + 1 + 4 + 1 + 8
    assert struct.unpack_from("<H", data, length_at)[0] < 3200
    struct.pack_into("<H", data, length_at, 0xFFFF)
    assert "overflow" in rejected(write(tmp_path, "a.wma", bytes(data)))


# --- AMR -------------------------------------------------------------------------------------


def _frame_types(data: bytes, magic: bytes, sizes: tuple[int | None, ...]) -> list[int]:
    types, pos = [], len(magic)
    while pos < len(data):
        types.append((data[pos] >> 3) & 0x0F)
        size = sizes[types[-1]]
        assert size
        pos += size
    assert pos == len(data)
    return types


def ffprobe_packets(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "a:0",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0",
                          str(path)], check=True, capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip())


@pytest.mark.parametrize(("kind", "magic", "sizes", "silent"),
                         [("amr_nb", amr.MAGIC_NB, amr.NB_SIZES, {8, 15}),
                          ("amr_wb", amr.MAGIC_WB, amr.WB_SIZES, {9, 15})])
def test_amr_counts_every_frame_dtx_included(kind: str, magic: bytes,
                                             sizes: tuple[int | None, ...],
                                             silent: set[int]) -> None:
    path = make_fixture(kind)
    types = _frame_types(path.read_bytes(), magic, sizes)
    dtx = sum(t in silent for t in types)
    assert dtx >= 50  # the fixture has a DTX pause
    info = probe_file(path)
    assert info.duration_seconds == pytest.approx(len(types) * 0.02)
    assert ffprobe_packets(path) == len(types)  # ffmpeg's demuxer: one packet per frame
    assert info.duration_seconds == pytest.approx(ffmpeg_duration(path), abs=0.001)
    # ffmpeg's own decoder skips frames it cannot decode (AMR-NB: SID and NO_DATA; AMR-WB:
    # SID): the reason the reference lays its decode on the frames' timestamps.
    assert ffmpeg_duration(path, fill_skipped_frames=False) < info.duration_seconds - 0.01


def test_amr_trailing_no_data_frames_count(tmp_path: Path) -> None:
    data = make_fixture("amr_nb").read_bytes()
    path = write(tmp_path, "tail.amr", data + bytes([15 << 3 | 0x04]) * 25)
    assert probe_file(path).duration_seconds == pytest.approx(
        probe_file(make_fixture("amr_nb")).duration_seconds + 0.5)
    assert ffprobe_packets(path) == ffprobe_packets(make_fixture("amr_nb")) + 25


def test_amr_cut_between_and_inside_frames(tmp_path: Path) -> None:
    data = make_fixture("amr_wb").read_bytes()
    types = _frame_types(data, amr.MAGIC_WB, amr.WB_SIZES)
    half = len(amr.MAGIC_WB) + sum(amr.WB_SIZES[t] or 0 for t in types[:100])
    assert measured_as_decoded(write(tmp_path, "a.awb", data[:half])) == pytest.approx(2.0)
    assert "truncated" in rejected(write(tmp_path, "b.awb", data[: half + 5]))


@pytest.mark.parametrize("bad", [0x84 | 7 << 3, 0x05, 12 << 3 | 0x04])  # F bit, padding, reserved
def test_amr_corrupt_frame_header(bad: int, tmp_path: Path) -> None:
    data = bytearray(make_fixture("amr_nb").read_bytes())
    types = _frame_types(bytes(data), amr.MAGIC_NB, amr.NB_SIZES)
    at = len(amr.MAGIC_NB) + sum(amr.NB_SIZES[t] or 0 for t in types[:200])
    data[at] = bad
    assert "corrupt" in rejected(write(tmp_path, "a.amr", bytes(data)))


def test_amr_sniffing() -> None:
    nb, wb = make_fixture("amr_nb").read_bytes(), make_fixture("amr_wb").read_bytes()
    assert sniff_format(nb[:100]) == "amr" and sniff_format(wb[:100]) == "awb"
    assert sniff_format(b"#!AMR\n") == "amr"  # the probe refuses it (no frames)
    assert sniff_format(b"#!AMR\n" + b"<html><body>" * 100) is None
    assert sniff_format(b"#!AMR_MC1.0\n" + nb[6:200]) is None  # multichannel: not supported
    assert sniff_format(b"#!AMR-WB\n" + nb[6:200]) is None  # NB frames under the WB magic


# --- AMR in 3GP ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "codec", "rate"),
                         [("3gp_amr_nb", "amr_nb", 8000), ("3gp_amr_wb", "amr_wb", 16000)])
def test_3gp_amr_is_described_from_the_codec(kind: str, codec: str, rate: int) -> None:
    info = probe_file(make_fixture(kind))
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("m4a", codec, rate, 1)
    # The same frames as the raw AMR fixture, NO_DATA and SID included.
    assert info.duration_seconds == probe_file(make_fixture(kind[4:])).duration_seconds


# --- bounded memory --------------------------------------------------------------------------


def _peak_bytes(fn):  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _long_recording(kind: str, tmp_path: Path) -> tuple[Path, float]:
    """A recording of `kind` over 1 MiB, many times as long as its fixture, and its expected
    duration."""
    data = make_fixture(kind).read_bytes()
    single = probe_file(make_fixture(kind)).duration_seconds
    if kind == "amr_nb":
        body = data[len(amr.MAGIC_NB):]
        return write(tmp_path, "long.amr", amr.MAGIC_NB + body * 200), single * 200
    if kind == "webm_opus_browser":  # the clusters again and again (unknown sizes chain)
        first = data.index(b"\x1f\x43\xb6\x75")
        private = find(make_fixture("webm_opus").read_bytes(), SEGMENT, TRACKS, TRACK_ENTRY,
                       CODEC_PRIVATE)
        pre_skip = struct.unpack_from("<H", make_fixture("webm_opus").read_bytes(),
                                      private[2] + 10)[0] / 48000
        path = write(tmp_path, "long.webm", data[:first] + data[first:] * 40)
        return path, (single + pre_skip) * 40 - pre_skip
    path = encoded(tmp_path / "long.wma", "sine=frequency=300:duration=600:sample_rate=8000",
                   "-c:a", "wmav1", "-b:a", "24k", "-f", "asf")  # ten minutes
    return path, ffmpeg_duration(path)


@pytest.mark.parametrize("kind", ["webm_opus_browser", "amr_nb", "wma_v1_8k"])
def test_long_recordings_are_walked_in_bounded_memory(kind: str, tmp_path: Path) -> None:
    path, expected = _long_recording(kind, tmp_path)
    assert path.stat().st_size > 1 << 20
    info, peak = _peak_bytes(lambda: probe_file(path))
    assert info.duration_seconds == pytest.approx(expected, abs=0.002)
    assert peak < 4 << 20  # a 1 MiB window and change, not the file


def test_amr_magic_then_filler_is_not_a_recording(tmp_path: Path) -> None:
    # Text after the magic can parse as frames: 'x' (0x78) is a NO_DATA frame header flagged
    # damaged, '|' (0x7c) a good one.
    # The magic and the fixture's first 16 frames: modes 0 to 7, twice.
    speech = make_fixture("amr_nb").read_bytes()[:6 + 2 * sum(amr.NB_SIZES[:8])]
    assert sniff_format(b"#!AMR\n" + b"x" * 5000) is None
    assert "damaged" in rejected(write(tmp_path, "x.amr", speech + b"x" * 5000))
    assert sniff_format(b"#!AMR\n" + b"|" * 5000) == "amr"
    assert "speech" in rejected(write(tmp_path, "bar.amr", b"#!AMR\n" + b"|" * 5000))


def test_wma_media_object_missing_a_fragment(tmp_path: Path) -> None:
    # One 100-byte packet taken out of the middle, every count and size adjusted to match:
    # only the media object whose fragment it carried shows the loss.
    data = bytearray(make_fixture("wma_small_packets").read_bytes())
    properties = _file_properties(bytes(data))
    packet = struct.unpack_from("<I", data, properties + 68)[0]
    assert packet == 100
    data_object = bytes(data).index(asf.DATA)
    start = data_object + 50
    count = (len(data) - start) // packet
    assert struct.unpack_from("<Q", data, data_object + 40)[0] == count  # no index after it
    middle = start + count // 2 * packet
    del data[middle : middle + packet]
    struct.pack_into("<Q", data, properties + 32, count - 1)
    struct.pack_into("<Q", data, data_object + 16,
                     struct.unpack_from("<Q", data, data_object + 16)[0] - packet)
    struct.pack_into("<Q", data, data_object + 40, count - 1)
    assert "fragments" in rejected(write(tmp_path, "a.wma", bytes(data)))
