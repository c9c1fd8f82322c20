"""Small audio fixtures in every supported format, generated on demand with ffmpeg, sox,
espeak-ng and lame, plus the reference duration of a file from a full ffmpeg decode.

Usage (tests/ is on sys.path under pytest)::

    from audio_fixtures import ALL_KINDS, FIXTURE_FORMAT, ffmpeg_duration, make_fixture

    for kind in ALL_KINDS:                  # or CORE_KINDS: one or two per format
        path = make_fixture(kind)           # Path to a small file, cached for the run
        expected_format = FIXTURE_FORMAT[kind]  # one of call_downloader.audio.FORMATS
        reference = ffmpeg_duration(path)   # seconds, from decoding every sample

    make_fixture("header_only_mp3")         # INVALID_KINDS: well-formed files with no audio
    truncated_copy("mp3_cbr", 0.503)        # about half of a fixture (invalid audio)
    ffprobe_stream(path)                    # {"codec_name", "sample_rate", "channels"}

Fixtures are cached in ``/tmp/cd-audio-fixtures-<hash>`` where the hash covers the recipes in
this file, so a changed recipe gets a fresh directory and an unchanged one is built once and
reused (also across test runs and parallel processes: files are written atomically).
Each fixture is 3 to 12 s of espeak-ng speech or sox tones, 5 KB to 2 MB. AMR has no encoder
in this ffmpeg (it decodes AMR only), so the AMR fixtures are built frame by frame: frames of
every mode with deterministic pseudo-random payload bits (any bit pattern is a valid AMR
frame), with a DTX silence (SID and NO_DATA frames) in the middle, as phones record.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

SPEECH_TEXT = (
    "Hello, this is a test call recording for the call downloader. "
    "The quick brown fox jumps over the lazy dog. Please hold the line."
)

# Tools every recipe needs; `make tools` installs them.
REQUIRED_TOOLS = ("ffmpeg", "sox", "lame", "espeak-ng")


# sox runs with -R ("repeatable"): its dither is otherwise seeded at random, so every build of
# a fixture would differ and a test's outcome could change with the build.
def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)


def _ffmpeg(*args: str | Path) -> None:
    _run("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args)


# --- sources -------------------------------------------------------------------------------


def _speech(out: Path) -> None:
    """espeak-ng speech, 22050 Hz mono 16-bit, about 9.3 s."""
    _run("espeak-ng", "-s", "150", "-w", out, SPEECH_TEXT)


def _speech_8k(out: Path) -> None:
    """The speech resampled to telephone quality (8 kHz mono 16-bit)."""
    _ffmpeg("-i", _source("speech"), "-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le", out)


def _speech_stereo_44k(out: Path) -> None:
    """Speech on the left, a 440 Hz tone on the right, 44.1 kHz, with a silent tail: ~11.3 s."""
    _run(
        "sox", "-R", "-M", _source("speech"),
        "|sox -R -n -r 22050 -c 1 -b 16 -t wav - synth 7.3 sine 440 vol 0.2",
        "-r", "44100", "-b", "16", out, "pad", "0", "2.017",
    )


def _tone_odd(out: Path) -> None:
    """A 3.217 s two-tone signal at 16 kHz (an odd length, so no round-number coincidence)."""
    _run("sox", "-R", "-n", "-r", "16000", "-c", "1", "-b", "16", out,
         "synth", "3.217", "sine", "300-3000", "vol", "0.5")


_SOURCES: dict[str, Callable[[Path], None]] = {
    "speech": _speech,
    "speech_8k": _speech_8k,
    "speech_stereo_44k": _speech_stereo_44k,
    "tone_odd": _tone_odd,
}


def _source(name: str) -> Path:
    return _cached(f"src_{name}.wav", _SOURCES[name])


# --- helpers used by some recipes ----------------------------------------------------------


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(id, payload) of every chunk of a small RIFF/WAVE file."""
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        chunks.append((cid, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _riff_build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack("<4sI", cid, len(p)) + p + (b"\0" if len(p) & 1 else b"") for cid, p in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def _strip_fact(src: Path, out: Path) -> None:
    """The same WAV without its `fact` chunk: the duration must come from the block layout."""
    chunks = [c for c in _riff_chunks(src.read_bytes()) if c[0] != b"fact"]
    out.write_bytes(_riff_build(chunks))


def _add_list_chunk(src: Path, out: Path) -> None:
    """Insert a LIST/INFO chunk (odd length, padded) between `fmt ` and `data`."""
    chunks = _riff_chunks(src.read_bytes())
    info = b"INFO" + b"INAM" + struct.pack("<I", 9) + b"Test call\0"
    fmt_at = next(i for i, c in enumerate(chunks) if c[0] == b"fmt ")
    chunks.insert(fmt_at + 1, (b"LIST", info))
    out.write_bytes(_riff_build(chunks))


_BITRATES = {
    1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}


def _prepend_vbri(src: Path, out: Path) -> None:
    """Turn a header-less VBR MP3 into one with a Fraunhofer VBRI header, as FhG encoders write.

    lame and ffmpeg cannot write VBRI, so the header frame is built here: a silent frame
    shaped like the first audio frame, carrying "VBRI" 32 bytes after the side info, with the
    frame and byte counts of the stream (and a one-entry TOC).
    """
    data = src.read_bytes()
    h = struct.unpack(">I", data[:4])[0]
    assert h >> 21 == 0x7FF, "source must start with a frame"
    version_bits = (h >> 19) & 3
    lsf = version_bits != 3
    rate = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}[
        version_bits
    ][(h >> 10) & 3]
    spf = 576 if lsf else 1152
    # Count frames of the source.
    frames, pos = 0, 0
    while pos + 4 <= len(data):
        fh = struct.unpack(">I", data[pos : pos + 4])[0]
        if fh >> 21 != 0x7FF:
            break
        br = _BITRATES[2 if lsf else 1][(fh >> 12) & 15] * 1000
        pad = (fh >> 9) & 1
        pos += (spf // 8 * br) // rate + pad
        frames += 1
    # Header frame: same header as the first frame, a bitrate big enough to hold the VBRI data.
    br_index = 8  # 64 kbit/s (MPEG-2/2.5) or 112 kbit/s (MPEG-1): plenty for 26 + TOC bytes
    hdr = (h & ~(0xF << 12) & ~(1 << 9)) | (br_index << 12) | (1 << 16)  # no CRC, no padding
    size = (spf // 8 * _BITRATES[2 if lsf else 1][br_index] * 1000) // rate
    vbri = b"VBRI" + struct.pack(
        ">HHHIIHHHH", 1, 1105, 75, len(data) + size, frames, 1, 1, 2, frames
    ) + struct.pack(">H", len(data) // 2 if len(data) < 0x1FFFF else 0xFFFF)
    frame = bytearray(size)
    frame[:4] = struct.pack(">I", hdr)
    frame[36 : 36 + len(vbri)] = vbri
    out.write_bytes(bytes(frame) + data)


def _big_id3(src: Path, out: Path) -> None:
    """Prepend a 300 KB ID3v2.4 tag (title + an embedded 'cover' picture) to an MP3."""
    from mutagen.id3 import APIC, ID3, TIT2

    shutil.copyfile(src, out)
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Test call"))
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover",
                  data=b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)))
    tags.save(out, v2_version=4)


def _ebml_elements(data: bytes, start: int, end: int):
    """(id, payload start, payload end) of the known-size EBML elements in data[start:end]."""
    pos = start
    while pos < end:
        id_len = 9 - data[pos].bit_length()
        size_len = 9 - data[pos + id_len].bit_length()
        raw = int.from_bytes(data[pos + id_len : pos + id_len + size_len], "big")
        body = pos + id_len + size_len
        size = raw & ((1 << (7 * size_len)) - 1)
        yield int.from_bytes(data[pos : pos + id_len], "big"), body, body + size
        pos = body + size


def _ebml(ident: int, payload: bytes | None) -> bytes:
    """An EBML element, its size in as few bytes as it fits (as libwebm writes); `payload`
    None: the header of an element of unknown size."""
    if payload is None:
        size = b"\x01\xff\xff\xff\xff\xff\xff\xff"
    else:
        width = next(w for w in range(1, 9) if len(payload) < (1 << (7 * w)) - 1)
        size = ((1 << (7 * width)) | len(payload)).to_bytes(width, "big")
    return ident.to_bytes((ident.bit_length() + 7) // 8, "big") + size + (payload or b"")


_SEGMENT, _INFO, _DURATION, _TRACKS = 0x18538067, 0x1549A966, 0x4489, 0x1654AE6B
_CLUSTER, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0x1F43B675, 0xA3, 0xA0, 0xA1


def _browser_webm(src: Path, out: Path) -> None:
    """Rewrite an ffmpeg WebM the way a browser's MediaRecorder writes one: Segment and
    Clusters of unknown size, no Duration, SeekHead, Cues or Tags, and only SimpleBlocks
    (no BlockGroup with DiscardPadding)."""
    data = src.read_bytes()
    (_, _, header_end), (seg_id, seg_start, seg_end) = list(_ebml_elements(data, 0, len(data)))[:2]
    assert seg_id == _SEGMENT
    parts = [data[:header_end], _ebml(_SEGMENT, None)]
    for ident, start, end in _ebml_elements(data, seg_start, seg_end):
        if ident == _INFO:
            kept = b"".join(_ebml(i, data[a:b]) for i, a, b in _ebml_elements(data, start, end)
                            if i != _DURATION)
            parts.append(_ebml(_INFO, kept))
        elif ident == _TRACKS:
            parts.append(_ebml(_TRACKS, data[start:end]))
        elif ident == _CLUSTER:
            parts.append(_ebml(_CLUSTER, None))
            for i, a, b in _ebml_elements(data, start, end):
                if i == _BLOCK_GROUP:
                    i, a, b = next(c for c in _ebml_elements(data, a, b) if c[0] == _BLOCK)
                    block = bytearray(data[a:b])
                    block[(9 - block[0].bit_length()) + 2] |= 0x80  # keyframe, as SimpleBlock
                    parts.append(_ebml(_SIMPLE_BLOCK, bytes(block)))
                else:
                    parts.append(_ebml(i, data[a:b]))
    out.write_bytes(b"".join(parts))


# Bytes of an AMR frame, header included, by frame type (RFC 4867 5.3); 0: not used here.
_AMR_NB_SIZES = (13, 14, 16, 18, 20, 21, 27, 32, 6, 0, 0, 0, 0, 0, 0, 1)
_AMR_WB_SIZES = (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 0, 0, 0, 0, 0, 1)


def _amr(wideband: bool) -> Callable[[Path], None]:
    """An AMR-NB or AMR-WB file built frame by frame: 160 speech frames cycling through every
    mode, a DTX pause (SID, 7 NO_DATA, SID, 7 NO_DATA, ...: 1.6 s), 170 more speech frames."""

    def build(out: Path) -> None:
        rng = random.Random(2300 + wideband)
        sizes = _AMR_WB_SIZES if wideband else _AMR_NB_SIZES
        modes, sid = (9, 9) if wideband else (8, 8)
        types = [i % modes for i in range(160)] + [sid, *[15] * 7] * 10 + [
            (i * 3) % modes for i in range(170)]
        frames = [bytes([t << 3 | 0x04]) + rng.randbytes(sizes[t] - 1) for t in types]
        out.write_bytes((b"#!AMR-WB\n" if wideband else b"#!AMR\n") + b"".join(frames))

    return build


def _to_3gp(src: Path, out: Path) -> None:
    """The AMR frames of `src` in a 3GP file (samr/sawb sample entries), as phones record."""
    _ffmpeg("-i", src, "-c", "copy", "-f", "3gp", out)


# --- recipes -------------------------------------------------------------------------------
# kind -> (expected sniffed format, builder(out_path)). Each builder writes `out`.

def _ff(src: str, *args: str) -> Callable[[Path], None]:
    return lambda out: _ffmpeg("-i", _source(src), *args, out)


def _sox(src: str, *args: str) -> Callable[[Path], None]:
    return lambda out: _run("sox", "-R", _source(src), *args, out)


def _lame(src: str, *args: str) -> Callable[[Path], None]:
    return lambda out: _run("lame", "--quiet", *args, _source(src), out)


def _from(kind: str, fn: Callable[[Path, Path], None]) -> Callable[[Path], None]:
    return lambda out: fn(make_fixture(kind), out)


_RECIPES: dict[str, tuple[str, Callable[[Path], None]]] = {
    # WAV, PCM and telephony codecs
    "wav_pcm16_8k": ("wav", _ff("speech_8k", "-c:a", "pcm_s16le", "-f", "wav")),
    "wav_pcm16_stereo_44k": ("wav", _ff("speech_stereo_44k", "-c:a", "pcm_s16le", "-f", "wav")),
    "wav_pcm8": ("wav", _ff("speech_8k", "-c:a", "pcm_u8", "-f", "wav")),
    "wav_pcm24_extensible": ("wav", _ff("tone_odd", "-c:a", "pcm_s24le", "-f", "wav")),
    "wav_float32": ("wav", _ff("speech", "-c:a", "pcm_f32le", "-f", "wav")),
    "wav_mulaw": ("wav", _ff("speech_8k", "-c:a", "pcm_mulaw", "-f", "wav")),
    "wav_alaw": ("wav", _ff("speech_8k", "-c:a", "pcm_alaw", "-f", "wav")),
    "wav_mulaw_sox": ("wav", _sox("speech_8k", "-e", "u-law", "-t", "wav")),
    "wav_ima_adpcm": ("wav", _ff("speech_8k", "-c:a", "adpcm_ima_wav", "-f", "wav")),
    "wav_ima_adpcm_sox": ("wav", _sox("speech_8k", "-e", "ima-adpcm", "-t", "wav")),
    "wav_ima_adpcm_nofact": ("wav", _from("wav_ima_adpcm_sox", _strip_fact)),
    "wav_ms_adpcm": ("wav", _ff("speech_8k", "-c:a", "adpcm_ms", "-f", "wav")),
    "wav_ms_adpcm_sox": ("wav", _sox("speech_8k", "-e", "ms-adpcm", "-t", "wav")),
    "wav_ms_adpcm_nofact": ("wav", _from("wav_ms_adpcm_sox", _strip_fact)),
    "wav_gsm": ("wav", _ff("speech_8k", "-c:a", "libgsm_ms", "-f", "wav")),
    "wav_gsm_sox": ("wav", _sox("speech_8k", "-e", "gsm-full-rate", "-t", "wav")),
    "wav_g722": ("wav", _ff("speech", "-ar", "16000", "-c:a", "g722", "-f", "wav")),
    "wav_g726": ("wav", _ff("speech_8k", "-c:a", "g726", "-b:a", "32k", "-f", "wav")),
    "wav_mp3": ("wav", _ff("speech_8k", "-c:a", "libmp3lame", "-b:a", "16k", "-f", "wav")),
    "wav_list_chunk": ("wav", _from("wav_pcm16_8k", _add_list_chunk)),
    "wav_rf64": ("wav", _ff("speech_8k", "-c:a", "pcm_s16le", "-rf64", "always", "-f", "wav")),
    # MP3
    "mp3_cbr": ("mp3", _lame("speech_stereo_44k", "-b", "128")),
    "mp3_cbr_noheader": ("mp3", _lame("speech_stereo_44k", "-b", "128", "-t")),
    "mp3_cbr_8k": ("mp3", _lame("speech_8k", "-b", "16")),
    "mp3_vbr_xing": ("mp3", _lame("speech_stereo_44k", "-V", "4")),
    "mp3_vbr_noheader": ("mp3", _lame("speech_stereo_44k", "-V", "4", "-t")),
    "mp3_vbr_8k_noheader": ("mp3", _lame("speech_8k", "-V", "6", "-t")),
    "mp3_vbr_vbri": ("mp3", _from("mp3_vbr_noheader", _prepend_vbri)),
    "mp3_ffmpeg_id3v1": ("mp3", _ff("speech", "-c:a", "libmp3lame", "-q:a", "5",
                                    "-write_id3v1", "1", "-metadata", "title=Test",
                                    "-f", "mp3")),
    "mp3_big_id3": ("mp3", _from("mp3_vbr_xing", _big_id3)),
    "mp2": ("mp3", _ff("speech", "-ar", "22050", "-c:a", "mp2", "-b:a", "64k", "-f", "mp2")),
    # Ogg
    "ogg_vorbis": ("ogg", _ff("speech_stereo_44k", "-c:a", "libvorbis", "-q:a", "3", "-f", "ogg")),
    "ogg_vorbis_8k": ("ogg", _ff("speech_8k", "-c:a", "libvorbis", "-f", "ogg")),
    "opus": ("opus", _ff("speech_stereo_44k", "-c:a", "libopus", "-b:a", "32k", "-f", "ogg")),
    "opus_8k_voip": ("opus", _ff("speech_8k", "-c:a", "libopus", "-b:a", "12k",
                                 "-application", "voip", "-f", "opus")),
    # FLAC
    "flac": ("flac", _ff("speech_stereo_44k", "-c:a", "flac", "-f", "flac")),
    "flac_8k": ("flac", _sox("speech_8k", "-t", "flac")),
    # MP4 / AAC
    "m4a_aac": ("m4a", _ff("speech_stereo_44k", "-c:a", "aac", "-b:a", "96k", "-f", "ipod")),
    "m4a_aac_8k": ("m4a", _ff("speech_8k", "-c:a", "aac", "-b:a", "24k", "-f", "mp4")),
    "m4a_faststart": ("m4a", _ff("tone_odd", "-c:a", "aac", "-movflags", "+faststart",
                                 "-f", "ipod")),
    "m4a_fragmented": ("m4a", _ff("speech_stereo_44k", "-c:a", "aac", "-b:a", "64k",
                                  "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                                  "-frag_duration", "1000000", "-f", "mp4")),
    "aac_adts": ("aac", _ff("speech_stereo_44k", "-c:a", "aac", "-b:a", "96k", "-f", "adts")),
    "aac_adts_8k": ("aac", _ff("speech_8k", "-c:a", "aac", "-b:a", "24k", "-f", "adts")),
    # WebM / Matroska
    "webm_opus": ("webm", _ff("speech_stereo_44k", "-c:a", "libopus", "-b:a", "32k",
                              "-f", "webm")),
    "webm_opus_browser": ("webm", _from("webm_opus", _browser_webm)),
    "webm_vorbis": ("webm", _ff("speech", "-c:a", "libvorbis", "-q:a", "2", "-f", "webm")),
    "mka_vorbis_8k": ("mka", _ff("speech_8k", "-c:a", "libvorbis", "-f", "matroska")),
    # WMA (ASF)
    "wma_v2": ("wma", _ff("speech_stereo_44k", "-c:a", "wmav2", "-b:a", "64k", "-f", "asf")),
    "wma_v1_8k": ("wma", _ff("speech_8k", "-c:a", "wmav1", "-b:a", "24k", "-f", "asf")),
    # 100-byte packets: every 256-byte media object is split across packets
    "wma_small_packets": ("wma", _ff("speech_8k", "-c:a", "wmav2", "-b:a", "32k",
                                     "-packet_size", "100", "-f", "asf")),
    # AMR, and AMR in 3GP
    "amr_nb": ("amr", _amr(wideband=False)),
    "amr_wb": ("awb", _amr(wideband=True)),
    "3gp_amr_nb": ("m4a", _from("amr_nb", _to_3gp)),
    "3gp_amr_wb": ("m4a", _from("amr_wb", _to_3gp)),
}

# Well-formed files holding no audio at all (zero samples): probing must reject them.
_INVALID_RECIPES: dict[str, tuple[str, Callable[[Path], None]]] = {
    f"header_only_{fmt}": (fmt, (lambda args: lambda out: _ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0", *args, out))(args))
    for fmt, args in {
        "wav": ("-f", "wav"),
        "mp3": ("-c:a", "libmp3lame", "-f", "mp3"),
        "ogg": ("-c:a", "libvorbis", "-f", "ogg"),
        "opus": ("-c:a", "libopus", "-f", "ogg"),
        "flac": ("-c:a", "flac", "-f", "flac"),
        "m4a": ("-c:a", "aac", "-f", "ipod"),
        "webm": ("-c:a", "libopus", "-f", "webm"),
        "wma": ("-c:a", "wmav2", "-f", "asf"),
    }.items()
} | {
    "header_only_amr": ("amr", lambda out: out.write_bytes(b"#!AMR\n")),
}

_EXT = {"mp3": ".mp3", "wav": ".wav", "ogg": ".ogg", "opus": ".opus", "flac": ".flac",
        "m4a": ".m4a", "aac": ".aac", "webm": ".webm", "mka": ".mka", "wma": ".wma",
        "amr": ".amr", "awb": ".awb"}

#: Every fixture kind, in a stable order.
ALL_KINDS: tuple[str, ...] = tuple(_RECIPES)
#: One or two kinds per format and telephony codec: for slow (end-to-end) loops.
CORE_KINDS: tuple[str, ...] = (
    "wav_pcm16_8k", "wav_mulaw", "wav_ima_adpcm", "wav_gsm", "mp3_cbr", "mp3_vbr_noheader",
    "ogg_vorbis", "opus", "flac", "m4a_aac", "aac_adts", "webm_opus_browser", "webm_vorbis",
    "wma_v2", "amr_nb", "amr_wb", "3gp_amr_nb",
)
#: Fixture kinds that are well-formed containers without a single sample (invalid audio).
INVALID_KINDS: tuple[str, ...] = tuple(_INVALID_RECIPES)
#: kind -> the format `call_downloader.audio.sniff_format` must report for it.
FIXTURE_FORMAT: dict[str, str] = {
    kind: fmt for kind, (fmt, _) in (_RECIPES | _INVALID_RECIPES).items()
}


def _recipes_hash() -> str:
    # The source of this module is the recipe: any edit gives a new cache directory.
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


_CACHE: Path | None = None


def cache_dir() -> Path:
    """The directory holding the generated fixtures (created on first use)."""
    global _CACHE
    if _CACHE is None:
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            raise RuntimeError(f"audio fixture tools missing: {missing}; run `make tools`")
        _CACHE = Path(tempfile.gettempdir()) / f"cd-audio-fixtures-{_recipes_hash()}"
        _CACHE.mkdir(parents=True, exist_ok=True)
    return _CACHE


def _cached(name: str, build: Callable[[Path], None]) -> Path:
    path = cache_dir() / name
    if not path.exists():
        # Build beside the target and rename: concurrent builders never see half a file.
        fd, tmp = tempfile.mkstemp(dir=cache_dir(), prefix=".build-", suffix=path.suffix)
        os.close(fd)
        try:
            build(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def make_fixture(kind: str) -> Path:
    """Path to the fixture `kind` (one of ALL_KINDS or INVALID_KINDS), built on first use."""
    try:
        fmt, build = (_RECIPES | _INVALID_RECIPES)[kind]
    except KeyError:
        known = ", ".join(ALL_KINDS + INVALID_KINDS)
        raise ValueError(f"unknown fixture kind {kind!r}; known: {known}") from None
    return _cached(kind + _EXT[fmt], build)


def truncated_copy(kind: str, keep: float = 0.5) -> Path:
    """A copy of fixture `kind` cut to its first `keep` fraction (0 < keep < 1): a recording
    cut short in transit, which the probe must reject. (A header-less MP3 or ADTS file cut
    exactly between two frames is a valid shorter file: pick fractions off the frame grid,
    e.g. 0.503, not 0.5.)"""
    if not 0 < keep < 1:
        raise ValueError("keep must be between 0 and 1")
    src = make_fixture(kind)

    def build(out: Path) -> None:
        data = src.read_bytes()
        out.write_bytes(data[: int(len(data) * keep)])

    return _cached(f"truncated_{kind}_{keep:.3f}{src.suffix}", build)


def ffprobe_stream(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """ffprobe's view of the first audio stream: codec_name, sample_rate, channels."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=codec_name,sample_rate,channels", "-of", "default=noprint_wrappers=1",
         os.fspath(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {
        "codec_name": fields.get("codec_name", ""),
        "sample_rate": int(fields.get("sample_rate", "0") or 0),
        "channels": int(fields.get("channels", "0") or 0),
    }


# ffmpeg's AMR decoders skip, with an error, the DTX frames they cannot decode (AMR-NB: SID
# and NO_DATA; AMR-WB: SID), although each stands for 20 ms of the call (a DTX-capable decoder
# renders it as comfort noise) and ffmpeg's demuxer gives it its timestamp. For these codecs
# the decode is laid on those timestamps: aresample fills each skipped frame (down to one
# 20 ms frame) with silence.
_FILLED_AT_TIMESTAMPS = ("amr_nb", "amr_wb")


def ffmpeg_duration(path: str | os.PathLike[str], fill_skipped_frames: bool = True) -> float:
    """Duration in seconds from a full ffmpeg decode of the first audio stream.

    Every sample is decoded (encoder delay and padding trimmed as ffmpeg does), resampled to
    48 kHz mono and counted, which is exact to a few samples whatever the source rate, unlike
    the rounded `time=` of ffmpeg's progress line. For AMR, the DTX frames ffmpeg's decoder
    skips are counted at their timestamps unless `fill_skipped_frames` is False (see
    _FILLED_AT_TIMESTAMPS). Raises RuntimeError if ffmpeg fails.
    """
    rate = 48000
    fill: list[str] = []
    if fill_skipped_frames and ffprobe_stream(path)["codec_name"] in _FILLED_AT_TIMESTAMPS:
        fill = ["-af", "aresample=async=1:min_hard_comp=0.01:first_pts=0"]
    # stderr goes to a file: a pipe could fill up with decode errors and deadlock the read.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", os.fspath(path),
             "-map", "0:a:0", *fill, "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le",
             "-f", "s16le", "-"],
            stdout=subprocess.PIPE, stderr=err,
        )
        assert proc.stdout is not None
        total = 0
        while chunk := proc.stdout.read(1 << 16):
            total += len(chunk)
        if proc.wait() != 0:
            err.seek(0)
            message = err.read(4000).decode(errors="replace")
            raise RuntimeError(f"ffmpeg could not decode {path}: {message}")
    return total / 2 / rate
