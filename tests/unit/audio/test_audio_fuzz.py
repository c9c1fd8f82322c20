"""Fuzzing the probe: mutated real recordings (bit flips, lying sizes, truncations, inserted,
deleted and duplicated bytes) and random bytes behind real magic numbers.

The property: probe_file either returns a sane AudioInfo or raises InvalidAudio, nothing
else, and each example stays within a time cap and a memory cap. Each example runs in a
forked child with an address-space limit (RLIMIT_AS) and a wall-clock cap; the caps are
hang and blow-up detectors with generous bounds, not performance assertions.
"""

from __future__ import annotations

import math
import os
import resource
import select
import signal
import sys
import tempfile
import time
import traceback

from audio_fixtures import make_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from call_downloader.audio import InvalidAudio, probe_file
from call_downloader.audio.common import MAX_DURATION_SECONDS

TIME_CAP_SECONDS = 5.0
MEMORY_CAP_BYTES = 256 << 20  # on top of the forked test process's address space

# One or more fixtures per parser path (small ones: the fuzzer writes a file per example).
FUZZ_KINDS = (
    "wav_pcm16_8k", "wav_ima_adpcm_sox", "wav_ms_adpcm", "wav_gsm", "wav_rf64", "wav_mp3",
    "mp3_vbr_xing", "mp3_vbr_8k_noheader", "mp3_vbr_vbri", "mp3_ffmpeg_id3v1",
    "ogg_vorbis_8k", "opus_8k_voip", "flac_8k", "m4a_aac_8k", "m4a_faststart", "m4a_fragmented",
    "aac_adts_8k", "webm_opus_browser", "webm_vorbis", "mka_vorbis_8k", "wma_small_packets",
    "amr_nb", "amr_wb", "3gp_amr_wb",
)
MAGICS = (
    b"RIFF\x00\x00\x00\x00WAVEfmt ", b"RF64\xff\xff\xff\xffWAVEds64", b"OggS\x00\x02",
    b"fLaC\x00\x00\x00\x22", b"\x00\x00\x00\x20ftypM4A ", b"ID3\x04\x00\x00",
    b"\xff\xfb\x90\x64", b"\xff\xf1\x50\x80", b"",
    b"\x1a\x45\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08B\x82\x84webm"
    b"B\x87\x81\x04B\x85\x81\x02\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff",
    bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\x00\x10\x00\x00\x00\x00\x00\x00",
    b"#!AMR\n", b"#!AMR-WB\n",
)
_CACHE: dict[str, bytes] = {}


def fixture_bytes(kind: str) -> bytes:
    if kind not in _CACHE:
        _CACHE[kind] = make_fixture(kind).read_bytes()
    return _CACHE[kind]


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def _child(path: str, out: int) -> None:
    """Runs in the forked child: probe under the memory cap, report one line, exit."""
    try:
        limit = _address_space() + MEMORY_CAP_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            info = probe_file(path)
        except InvalidAudio as exc:
            message = f"invalid {exc.reason}"
        else:
            sane = (0 < info.duration_seconds <= MAX_DURATION_SECONDS
                    and math.isfinite(info.duration_seconds))
            message = f"ok {info}" if sane else f"error insane result {info}"
    except BaseException:  # report everything: that is the point of the test
        message = "error " + traceback.format_exc()
    os.write(out, message.encode(errors="replace")[:60000])


def probe_guarded(data: bytes) -> str:
    """probe_file(data) in a forked child under the time and memory caps: "ok ...",
    "invalid <reason>", or "error ..."/"hang"/"crash ..." for failures."""
    with tempfile.NamedTemporaryFile(prefix="cd-fuzz-", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(read_end)
                _child(path, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        deadline = time.monotonic() + TIME_CAP_SECONDS
        chunks: list[bytes] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return "hang"
                ready, _, _ = select.select([read_end], [], [], remaining)
                if ready:
                    chunk = os.read(read_end, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        finally:
            os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if not chunks:
            return f"crash (wait status {status})"
        return b"".join(chunks).decode()
    finally:
        os.unlink(path)


def assert_only_invalid_audio(data: bytes) -> None:
    verdict = probe_guarded(data)
    assert verdict.startswith(("ok ", "invalid ")), verdict


@st.composite
def mutated_recordings(draw: st.DrawFn) -> bytes:
    data = bytearray(fixture_bytes(draw(st.sampled_from(FUZZ_KINDS))))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        size = len(data)
        # Headers live at the start (and Ogg/MP4 indexes at the end): aim there often, past
        # the first 8 bytes most of the time so the magic number usually survives.
        lo, hi = [(8, 127), (8, 4095), (size - 2048, size - 1), (0, size - 1)][
            draw(st.integers(0, 3))]
        pos = draw(st.integers(min(max(lo, 0), size - 1), min(hi, size - 1)))
        op = draw(st.sampled_from(
            ["flip", "byte", "word", "truncate", "delete", "insert", "duplicate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "word":  # sizes and counts: the values that make parsers misbehave
            value = draw(st.sampled_from(
                [0, 1, 8, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, draw(st.integers(0, 2**32 - 1))]))
            data[pos : pos + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
        elif op == "truncate":
            del data[pos:]
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4096))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=512))
        else:
            length = draw(st.integers(1, 8192))
            src = draw(st.integers(0, size - 1))
            data[pos:pos] = data[src : src + length]
    return bytes(data)


@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_recordings())
def test_mutated_recordings_only_raise_invalid_audio(data: bytes) -> None:
    assert_only_invalid_audio(data)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=4096))
def test_random_bytes_behind_magic_numbers(magic: bytes, tail: bytes) -> None:
    assert_only_invalid_audio(magic + tail)


def test_guard_catches_what_it_should(monkeypatch) -> None:
    # The guard must fail loudly, or the fuzz tests above prove nothing.
    import call_downloader.audio.probe as probe_module

    ok = fixture_bytes("wav_pcm16_8k")
    assert probe_guarded(ok).startswith("ok ")
    assert probe_guarded(b"").startswith("invalid ")

    this = sys.modules[__name__]

    def raises(_path: str) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(probe_module, "_probe", lambda *_a: [][1])
    assert probe_guarded(ok).startswith("invalid ")  # mapped by the probe's safety net...
    monkeypatch.setattr(this, "probe_file", raises)
    assert probe_guarded(ok).startswith("error ")  # ...and anything escaping is reported

    monkeypatch.setattr(this, "probe_file", lambda _p: bytearray(1 << 30))
    assert probe_guarded(ok).startswith("error ")  # memory cap: MemoryError in the child

    monkeypatch.setattr(this, "probe_file", lambda _p: time.sleep(60))
    monkeypatch.setattr(this, "TIME_CAP_SECONDS", 0.5)
    assert probe_guarded(ok) == "hang"


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_sniffing_never_raises(magic: bytes, tail: bytes) -> None:
    from call_downloader.audio import FORMATS, sniff_format

    assert sniff_format(magic + tail) in (*FORMATS, None)


def test_deeply_nested_mp4_boxes() -> None:
    # 2000 nested moov boxes: a recursion bomb for a naive box parser.
    depth = 2000
    ftyp = b"\x00\x00\x00\x10ftypM4A \x00\x00\x00\x00"
    nested = b"".join((8 * (depth - i)).to_bytes(4, "big") + b"moov" for i in range(depth))
    verdict = probe_guarded(ftyp + nested)
    assert verdict.startswith("invalid ") and "deep" in verdict, verdict
