"""probe_file: durations against a full ffmpeg decode for every fixture kind, and rejection
(InvalidAudio, nothing else) of truncated, corrupt, lying, empty and non-audio files."""

from __future__ import annotations

import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audio_fixtures import (
    ALL_KINDS,
    FIXTURE_FORMAT,
    INVALID_KINDS,
    ffmpeg_duration,
    ffprobe_stream,
    make_fixture,
    truncated_copy,
)
from audio_probe_helpers import rejected, tolerance, write

from call_downloader.audio import AudioInfo, adts, mpeg, probe_file, sniff_file
from call_downloader.audio.common import MAX_DURATION_SECONDS


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_duration_matches_full_decode(kind: str) -> None:
    path = make_fixture(kind)
    info = probe_file(path)
    reference = ffmpeg_duration(path)
    assert reference > 1
    assert abs(info.duration_seconds - reference) <= tolerance(reference), (info, reference)
    assert info.format == FIXTURE_FORMAT[kind]
    stream = ffprobe_stream(path)
    assert info.sample_rate == stream["sample_rate"]
    if info.format != "m4a":  # mutagen may report 2 for mono AAC in MP4 (see mp4.py)
        assert info.channels == stream["channels"]
    assert info.bitrate and info.bitrate > 0
    assert info.codec


@pytest.mark.parametrize(
    ("kind", "codec"),
    [("wav_pcm16_8k", "pcm_s16le"), ("wav_pcm8", "pcm_u8"), ("wav_mulaw", "pcm_mulaw"),
     ("wav_alaw", "pcm_alaw"), ("wav_ima_adpcm", "adpcm_ima_wav"), ("wav_ms_adpcm", "adpcm_ms"),
     ("wav_gsm", "gsm_ms"), ("wav_g722", "adpcm_g722"), ("wav_g726", "adpcm_g726"),
     ("wav_mp3", "mp3"), ("wav_float32", "pcm_f32le"), ("wav_pcm24_extensible", "pcm_s24le"),
     ("mp3_cbr", "mp3"), ("mp2", "mp2"), ("ogg_vorbis", "vorbis"), ("opus", "opus"),
     ("flac", "flac"), ("m4a_aac", "aac"), ("aac_adts", "aac"), ("webm_opus", "opus"),
     ("webm_vorbis", "vorbis"), ("mka_vorbis_8k", "vorbis"), ("wma_v2", "wmav2"),
     ("wma_v1_8k", "wmav1"), ("amr_nb", "amr_nb"), ("amr_wb", "amr_wb"),
     ("3gp_amr_nb", "amr_nb"), ("3gp_amr_wb", "amr_wb")],
)
def test_codec_names_follow_ffmpeg(kind: str, codec: str) -> None:
    assert probe_file(make_fixture(kind)).codec == codec
    assert ffprobe_stream(make_fixture(kind))["codec_name"] == codec


def test_mutagen_alone_would_be_wrong_where_we_compute() -> None:
    # Guards the reason this module exists: these are the files where mutagen's header
    # length is off by more than the tolerance, and ours is not.
    import mutagen

    for kind in ("mp3_vbr_noheader", "wav_ima_adpcm", "wav_gsm", "wav_g722"):
        path = make_fixture(kind)
        reference = ffmpeg_duration(path)
        assert abs(mutagen.File(path).info.length - reference) > tolerance(reference)
        assert abs(probe_file(path).duration_seconds - reference) <= tolerance(reference)


def test_format_hint_does_not_override_the_bytes() -> None:
    info = probe_file(make_fixture("mp3_cbr"), "wav")
    assert info.format == "mp3"
    with pytest.raises(ValueError):
        probe_file(make_fixture("mp3_cbr"), "mp4")


def test_missing_file_is_an_os_error_not_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_file(tmp_path / "nope")


# --- invalid input -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_header_only_files(kind: str) -> None:
    path = make_fixture(kind)
    assert sniff_file(path) == FIXTURE_FORMAT[kind]
    rejected(path)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_truncated_files_are_rejected(kind: str) -> None:
    # Cut points off the frame grid of the fixtures (see the next test for why).
    for keep in (0.503, 0.901):
        rejected(truncated_copy(kind, keep))


def test_headerless_mp3_cut_between_frames_is_a_shorter_file(tmp_path: Path) -> None:
    # The limit of truncation detection: an MP3 without a Xing header (or ADTS) cut exactly
    # between two frames is byte for byte a complete, shorter file. It is measured as such,
    # matching the decode.
    data = make_fixture("mp3_cbr_8k").read_bytes()
    assert data[:2] == b"\xff\xe3" and len(data) % 144 == 0  # 144-byte frames, no Xing frame
    path = write(tmp_path, "half.mp3", data[: len(data) // 2 // 144 * 144])
    reference = ffmpeg_duration(path)
    assert probe_file(path).duration_seconds == pytest.approx(reference, abs=0.001)


# The last byte of these files is audio (the others end in a tag or a WAV tolerates a
# missing pad byte), so losing even one byte is a truncation.
ENDS_IN_AUDIO = [k for k in ALL_KINDS if not k.startswith("wav") and k != "mp3_ffmpeg_id3v1"]


@pytest.mark.parametrize("kind", ENDS_IN_AUDIO)
def test_one_missing_byte_is_detected(kind: str, tmp_path: Path) -> None:
    data = make_fixture(kind).read_bytes()
    rejected(write(tmp_path, "cut", data[:-1]))


@pytest.mark.parametrize("kind", ["wav_pcm16_8k", "wav_ima_adpcm", "wav_gsm", "wav_rf64"])
def test_wav_missing_more_than_a_byte_is_detected(kind: str, tmp_path: Path) -> None:
    data = make_fixture(kind).read_bytes()
    # Three bytes: past the pad byte an odd-sized chunk has, and the one byte of slack.
    assert "truncated" in rejected(write(tmp_path, "cut", data[:-3]))


def test_id3v1_loss_is_not_audio_loss(tmp_path: Path) -> None:
    data = make_fixture("mp3_ffmpeg_id3v1").read_bytes()
    assert data[-128:-125] == b"TAG"
    full = probe_file(make_fixture("mp3_ffmpeg_id3v1")).duration_seconds
    assert probe_file(write(tmp_path, "a", data[:-128])).duration_seconds == full
    # Cut into the audio before the tag: truncated.
    rejected(write(tmp_path, "b", data[:-200]))


@pytest.mark.parametrize("kind", ["wav_pcm16_8k", "mp3_cbr", "ogg_vorbis", "opus", "flac",
                                  "m4a_aac", "m4a_faststart", "aac_adts", "webm_opus",
                                  "webm_opus_browser", "mka_vorbis_8k", "wma_v2", "amr_nb",
                                  "amr_wb", "3gp_amr_nb"])
def test_cut_inside_the_headers(kind: str, tmp_path: Path) -> None:
    data = make_fixture(kind).read_bytes()
    for size in (1, 4, 12, 30, 60, 200):
        rejected(write(tmp_path, f"h{size}", data[:size]))


NOT_AUDIO = {
    "empty": b"",
    "text": b"just some text\n" * 100,
    "html": b"<html><body>" + b"<p>hello</p>" * 500 + b"</body></html>",
    "png": b"\x89PNG\r\n\x1a\n" + os.urandom(3000),
    "random": os.urandom(50_000),
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_not_audio(name: str, tmp_path: Path) -> None:
    reason = rejected(write(tmp_path, "x.mp3", NOT_AUDIO[name]))
    if name == "empty":
        assert reason == "empty file"


def _chunks(data: bytes) -> dict[bytes, int]:
    """Offset of each RIFF chunk header."""
    found, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        found[cid] = pos
        if size == 0xFFFFFFFF:
            break
        pos += 8 + size + (size & 1)
    return found


def test_wav_lying_headers(tmp_path: Path) -> None:
    data = bytearray(make_fixture("wav_pcm16_8k").read_bytes())
    chunks = _chunks(bytes(data))
    fmt, dat = chunks[b"fmt "], chunks[b"data"]

    def variant(offset: int, fmt_: str, value: int) -> Path:
        changed = bytearray(data)
        struct.pack_into(fmt_, changed, offset, value)
        return write(tmp_path, f"v{offset}-{value}", bytes(changed))

    assert "truncated" in rejected(variant(dat + 4, "<I", 0x7FFFFFF0))  # data bigger than file
    rejected(variant(fmt + 10, "<H", 0))  # zero channels
    rejected(variant(fmt + 12, "<I", 0))  # zero sample rate
    rejected(variant(fmt + 20, "<H", 3))  # block align inconsistent with 16-bit mono
    rejected(variant(fmt + 22, "<H", 13))  # 13 bits per sample PCM
    rejected(variant(fmt + 4, "<I", 8))  # fmt chunk too short
    # Sizes streaming writers leave (0, 0xFFFFFFFF) mean "to the end of the file".
    full = probe_file(make_fixture("wav_pcm16_8k")).duration_seconds
    assert probe_file(variant(dat + 4, "<I", 0xFFFFFFFF)).duration_seconds == full
    assert probe_file(variant(dat + 4, "<I", 0)).duration_seconds == full
    # A data chunk claiming less than is there: only the declared audio counts.
    assert probe_file(variant(dat + 4, "<I", 16000)).duration_seconds == 1.0  # 16 kB/s


def test_rf64_lying_ds64(tmp_path: Path) -> None:
    data = bytearray(make_fixture("wav_rf64").read_bytes())
    ds64 = _chunks(bytes(data))[b"ds64"]
    struct.pack_into("<Q", data, ds64 + 8 + 8, 10**12)
    assert "truncated" in rejected(write(tmp_path, "a.wav", bytes(data)))


def _first_frame_offset(data: bytes) -> int:
    size = data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9]
    return 10 + size if data[:3] == b"ID3" else 0


def test_mp3_xing_claiming_more_frames(tmp_path: Path) -> None:
    data = bytearray(make_fixture("mp3_vbr_xing").read_bytes())
    at = data.index(b"Xing", _first_frame_offset(bytes(data)))
    frames = struct.unpack_from(">I", data, at + 8)[0]
    struct.pack_into(">I", data, at + 8, frames * 2)
    assert "truncated" in rejected(write(tmp_path, "a.mp3", bytes(data)))


def test_mp3_damage_in_the_middle_is_skipped(tmp_path: Path) -> None:
    # A burst of garbage inside the stream: decoders resynchronise and so does the walk.
    data = make_fixture("mp3_cbr_noheader").read_bytes()
    mid = len(data) // 2
    damaged = data[:mid] + b"\x00" * 1000 + data[mid:]
    info = probe_file(write(tmp_path, "a.mp3", damaged))
    reference = ffmpeg_duration(tmp_path / "a.mp3")
    assert abs(info.duration_seconds - reference) <= tolerance(reference)


def test_flac_streaminfo_claiming_more_samples(tmp_path: Path) -> None:
    data = bytearray(make_fixture("flac").read_bytes())
    assert data[:4] == b"fLaC"
    info_at = 8  # STREAMINFO body
    packed = int.from_bytes(data[info_at + 13 : info_at + 18], "big")
    total = packed & 0xFFFFFFFFF
    packed = (packed & ~0xFFFFFFFFF) | (total + 44100)
    data[info_at + 13 : info_at + 18] = packed.to_bytes(5, "big")
    assert "truncated" in rejected(write(tmp_path, "a.flac", bytes(data)))
    # An unknown total (0), as streaming encoders leave it, comes from the last frame.
    packed &= ~0xFFFFFFFFF
    data[info_at + 13 : info_at + 18] = packed.to_bytes(5, "big")
    got = probe_file(write(tmp_path, "b.flac", bytes(data))).duration_seconds
    assert got == pytest.approx(total / 44100)


def test_ogg_lying_granule(tmp_path: Path) -> None:
    data = bytearray(make_fixture("ogg_vorbis_8k").read_bytes())
    last = data.rindex(b"OggS")
    struct.pack_into("<q", data, last + 6, 2**62)
    assert "impossible" in rejected(write(tmp_path, "a.ogg", bytes(data)))


def test_m4a_inconsistent_tables(tmp_path: Path) -> None:
    data = bytearray(make_fixture("m4a_faststart").read_bytes())
    at = data.index(b"stsz")
    count = struct.unpack_from(">I", data, at + 12)[0]
    struct.pack_into(">I", data, at + 12, count + 5)
    rejected(write(tmp_path, "a.m4a", bytes(data)))


# --- bounded resources on big files --------------------------------------------------------


def _peak_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_sparse_wav_is_probed_without_reading_it(tmp_path: Path) -> None:
    size = 1 << 30
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    header = (b"RIFF" + struct.pack("<I", size - 8) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
              + fmt + b"data" + struct.pack("<I", size - 44))
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(size)  # sparse: 1 GB without using the disk
    info, peak = _peak_bytes(lambda: probe_file(path))
    assert isinstance(info, AudioInfo)
    assert info.duration_seconds == pytest.approx((size - 44) / 16000)
    assert peak < 2 << 20


def test_big_mp3_is_walked_in_bounded_memory(tmp_path: Path) -> None:
    frames = make_fixture("mp3_cbr_noheader").read_bytes()
    repeats = 40  # ~7 MB, 17400 frames
    path = write(tmp_path, "big.mp3", frames * repeats)
    single = probe_file(make_fixture("mp3_cbr_noheader")).duration_seconds
    info, peak = _peak_bytes(lambda: probe_file(path))
    assert isinstance(info, AudioInfo)
    assert info.duration_seconds == pytest.approx(single * repeats)
    assert peak < 4 << 20  # a 1 MiB window and change, not the file


@pytest.mark.parametrize("kind", ["mp3_cbr_noheader", "aac_adts"])
def test_audio_start_then_a_gigabyte_of_zeros(kind: str, tmp_path: Path) -> None:
    # A valid start then junk: rejected after a bounded amount of scanning, not 1 GB of it.
    path = tmp_path / "junk"
    with open(path, "wb") as f:
        f.write(make_fixture(kind).read_bytes()[:20000])
        f.truncate(1 << 30)
    (reason, peak) = _peak_bytes(lambda: rejected(path))
    assert "not" in str(reason)
    assert peak < 8 << 20


def test_duration_cap_constant_is_sane() -> None:
    assert 24 * 3600 <= MAX_DURATION_SECONDS <= 31 * 24 * 3600


def _frame_starts(data: bytes, header_at: Callable[[bytes, int], Any]) -> list[int]:
    """Offsets of consecutive frames from the start of a header-less stream."""
    starts, pos = [], 0
    while (h := header_at(data, pos)) is not None:
        starts.append(pos)
        pos += h.length
    assert pos == len(data), "the fixture is one unbroken run of frames"
    return starts


@pytest.mark.parametrize(
    ("kind", "header_bytes", "header_at"),
    [
        ("aac_adts", 7, adts.parse_header),
        ("aac_adts_8k", 7, adts.parse_header),
        ("mp3_cbr_noheader", 4, mpeg.parse_header),
        ("mp3_vbr_noheader", 4, mpeg.parse_header),
    ],
)
def test_a_cut_inside_a_frame_header_is_a_truncation(
    kind: str, header_bytes: int, header_at: Callable[[bytes, int], Any], tmp_path: Path
) -> None:
    # Frame-based streams have no length field: a file cut exactly between frames is a valid
    # shorter file, but one cut 1 to header_bytes-1 bytes into the next frame's header is not
    # (a cut that happens to land there once passed as "2 bytes of junk").
    data = make_fixture(kind).read_bytes()
    starts = _frame_starts(data, header_at)
    middle = starts[len(starts) // 2]
    for extra in range(1, header_bytes):
        reason = rejected(write(tmp_path, f"cut{extra}", data[: middle + extra]))
        assert "truncated" in reason
    whole_frames = probe_file(write(tmp_path, "between", data[:middle]))
    assert whole_frames.duration_seconds > 0  # the control: a cut between frames is valid
