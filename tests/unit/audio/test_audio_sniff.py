"""Format sniffing from the bytes: every fixture kind, and many things that are not audio."""

from __future__ import annotations

import io
import random
import struct
import zipfile

import pytest
from audio_fixtures import ALL_KINDS, FIXTURE_FORMAT, make_fixture

from call_downloader.audio import FORMATS, SNIFF_BYTES, sniff_file, sniff_format


def head_of(kind: str) -> bytes:
    return make_fixture(kind).read_bytes()[:SNIFF_BYTES]


def mp3_frames(kind: str = "mp3_cbr_noheader") -> bytes:
    """The raw MPEG frames of a header-less fixture."""
    return make_fixture(kind).read_bytes()


def id3_tag(payload_size: int) -> bytes:
    """A well-formed ID3v2.4 tag: one TXXX frame of `payload_size` bytes."""
    body = b"\x03desc\x00" + b"v" * payload_size
    frame = b"TXXX" + _syncsafe(len(body)) + b"\x00\x00" + body
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def test_sniff_bytes_within_64k() -> None:
    assert 4096 <= SNIFF_BYTES <= 64 * 1024


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_fixture_kind_is_recognised(kind: str) -> None:
    assert FIXTURE_FORMAT[kind] in FORMATS
    assert sniff_format(head_of(kind)) == FIXTURE_FORMAT[kind]
    assert sniff_file(make_fixture(kind)) == FIXTURE_FORMAT[kind]


@pytest.mark.parametrize("kind", ["wav_pcm16_8k", "mp3_vbr_xing", "ogg_vorbis", "opus", "flac",
                                  "m4a_aac", "aac_adts", "webm_opus", "mka_vorbis_8k", "wma_v2",
                                  "amr_nb", "amr_wb"])
def test_more_than_sniff_bytes_is_fine(kind: str) -> None:
    data = make_fixture(kind).read_bytes()
    assert sniff_format(data) == FIXTURE_FORMAT[kind]


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("song.mp3", mp3_frames()[:20000])
    return buf.getvalue()


NOT_AUDIO = {
    "empty": b"",
    "one byte": b"\xff",
    "text": b"Hello, this is not a recording.\n" * 100,
    "html": b"<!DOCTYPE html><html><head><title>x</title></head><body>" + b"a" * 5000,
    "json": b'{"audio": "no", "frames": [255, 251, 144, 0]}',
    "png": b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 20,
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20,
    "gif": b"GIF89a" + bytes(range(256)) * 20,
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 50,
    "zip holding an mp3": _zip_bytes(),
    "zeros": b"\x00" * 10000,
    "0xff run": b"\xff" * 10000,
    "riff avi": b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x00" * 2000,
    "riff wave, junk first chunk": b"RIFF\x00\x10\x00\x00WAVE\x01\x02\x03\x04" + b"\x00" * 100,
    "ogg theora": b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x2a" + b"\x80theora" + b"\x00" * 100,
    "ogg speex": b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x50" + b"Speex   " + b"\x00" * 100,
    "ogg flac": b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x33" + b"\x7fFLAC" + b"\x00" * 100,
    "ogg not first page": b"OggS\x00\x00" + b"\x00" * 20 + b"\x01\x1e" + b"\x01vorbis" + b"\0" * 99,
    "flac without streaminfo": b"fLaC\x84\x00\x00\x10" + b"\x00" * 100,
    "mp4 video brand": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100,
    "mp4 silly ftyp size": b"\x00\x10\x00\x00ftypM4A " + b"\x00" * 100,
    "id3 then html": id3_tag(50) + b"<html><body>" + b"x" * 20000,
    "id3 header, garbage frames": b"ID3\x03\x00\x00\x00\x00\x10\x00" + b"<html>" * 500,
    "id3 header only": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "one mpeg frame header then junk": mp3_frames()[:4] + b"\x00" * 3000,
    "ebml of another doctype": b"\x1a\x45\xdf\xa3\x8f\x42\x82\x88matroskb\x42\x87\x81\x04"
                               + b"\x00" * 500,
    "ebml header cut short": b"\x1a\x45\xdf\xa3\xa3\x42\x82\x84webm",
    "asf guid, silly header size": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
                                   + b"\xff" * 8 + b"\x05\x00\x00\x00\x01\x02" + b"\x00" * 100,
    "amr magic then text": b"#!AMR\n" + b"This is not a frame. " * 100,
    "amr-wb magic then zeros with the f bit": b"#!AMR-WB\n" + b"\x80" * 1000,
    "frames of different rates": b"".join(
        struct.pack(">I", 0xFFFB9000 | (i % 3) << 10) + b"\x00" * 413 for i in range(8)),
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_not_audio(name: str) -> None:
    assert sniff_format(NOT_AUDIO[name]) is None


def test_random_bytes_are_not_audio() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        assert sniff_format(rng.randbytes(rng.choice([10, 100, 5000, SNIFF_BYTES]))) is None


@pytest.mark.parametrize(
    "prefix", [b"<html><body>", b"PK\x03\x04" + b"\x00" * 26, b"\x00", b"x" * 4])
def test_polyglot_junk_before_frames_is_rejected(prefix: bytes) -> None:
    for kind in ("mp3_cbr_noheader", "aac_adts", "flac", "wav_pcm16_8k", "ogg_vorbis"):
        assert sniff_format(prefix + head_of(kind)) is None, kind


def test_audio_followed_by_anything_is_audio() -> None:
    # Only the start counts: appended junk does not change the verdict here (the probe
    # decides whether the file is complete).
    assert sniff_format(mp3_frames()[:20000] + b"<html>" * 100) == "mp3"


def test_id3_before_mpeg_flac_and_adts() -> None:
    tag = id3_tag(3000)
    assert sniff_format(tag + head_of("mp3_cbr_noheader")) == "mp3"
    assert sniff_format(tag + head_of("flac")) == "flac"
    assert sniff_format(tag + head_of("aac_adts")) == "aac"
    # Stacked tags and zero padding after the tag, as some taggers write.
    assert sniff_format(tag + tag + b"\x00" * 500 + head_of("mp3_cbr_noheader")) == "mp3"


def test_id3_larger_than_the_head(tmp_path) -> None:
    tag = id3_tag(300_000)
    mp3 = tag + mp3_frames()
    assert sniff_format(mp3[:SNIFF_BYTES]) == "mp3"  # cannot see past the tag: MP3 assumed
    (tmp_path / "a").write_bytes(mp3)
    assert sniff_file(tmp_path / "a") == "mp3"
    # sniff_file looks past the tag, so a FLAC or junk behind a big tag is told apart.
    (tmp_path / "b").write_bytes(tag + make_fixture("flac").read_bytes())
    assert sniff_file(tmp_path / "b") == "flac"
    (tmp_path / "c").write_bytes(tag + b"<html>" * 10000)
    assert sniff_file(tmp_path / "c") is None
    # A head that is the whole file and ends inside the tag is not audio.
    assert sniff_format(tag[:5000]) is None


def test_tiny_files_judged_on_what_is_there() -> None:
    frames = mp3_frames()
    length = 417  # 128 kbit/s at 44.1 kHz, no padding bit on the first frame
    assert frames[:2] == b"\xff\xfb"
    two = frames[: length * 2 + (frames[length + 2] >> 1 & 1)]
    assert sniff_format(two) == "mp3"  # a complete 2-frame file
    assert sniff_format(two[:-10]) is None  # the last frame cut short, and nothing else


def test_wav_variants() -> None:
    pcm = head_of("wav_pcm16_8k")
    assert sniff_format(b"RF64" + b"\xff" * 4 + b"WAVE" + b"ds64" + pcm[16:]) == "wav"
    assert sniff_format(b"BW64" + b"\xff" * 4 + b"WAVE" + b"ds64" + pcm[16:]) == "wav"
    assert sniff_format(b"RF64" + b"\xff" * 4 + b"WAVE" + pcm[12:]) is None  # no ds64
    assert sniff_format(b"RIFX" + pcm[4:]) is None  # big-endian RIFF: not supported
