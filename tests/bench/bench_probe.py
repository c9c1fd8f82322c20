"""Duration probing: files per second over the mixed fixture set (tests/audio_fixtures.py,
every valid kind: MP3 CBR/VBR/Xing/VBRI/ID3, WAV PCM/telephony codecs/RF64, Ogg Vorbis/Opus,
FLAC, M4A, ADTS AAC, WebM/Matroska Opus/Vorbis (a browser's recording included), WMA, AMR-NB/WB
raw and in 3GP), against two baselines on the same files:

- `mutagen.File(path)`: the library the SPEC names, header-based. It is the floor for pure
  Python: our probe reads the same headers and then walks frames where headers only
  estimate, so it is expected to be slower; the accuracy column shows what that buys.
- `ffprobe` (one process per file): what operators usually reach for.

Accuracy: files whose reported duration is within max(0.1 s, 0.5 %) of a full ffmpeg decode,
also by format (`accurate_by_format`: format -> files and how many each one got right).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench_common import log, ratio


def _rate(fn: Any, paths: list[Any], min_seconds: float) -> tuple[float, int]:
    done = 0
    started = time.perf_counter()
    while True:
        for p in paths:
            fn(p)
        done += len(paths)
        took = time.perf_counter() - started
        if took >= min_seconds:
            return done / took, done


def _ffprobe_duration(path: Any) -> float | None:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    try:
        return float(json.loads(out.stdout)["format"]["duration"])
    except (ValueError, KeyError, TypeError):
        return None


def _mutagen_duration(path: Any) -> float | None:
    import mutagen

    try:
        f = mutagen.File(path)
    except Exception:
        return None
    return float(f.info.length) if f is not None and getattr(f, "info", None) else None


def run(min_seconds: float = 2.0) -> dict[str, Any]:
    from audio_fixtures import ALL_KINDS, FIXTURE_FORMAT, ffmpeg_duration, make_fixture

    from call_downloader.audio.probe import probe_file

    paths = [make_fixture(kind) for kind in ALL_KINDS]
    reference = {p: ffmpeg_duration(p) for p in paths}
    formats = dict(zip(paths, (FIXTURE_FORMAT[kind] for kind in ALL_KINDS), strict=True))

    def ours(p: Any) -> float | None:
        return probe_file(p).duration_seconds

    def right(fn: Any) -> dict[Any, bool]:
        out = {}
        for p in paths:
            got = fn(p)
            out[p] = got is not None and abs(got - reference[p]) <= max(0.1, 0.005 * reference[p])
        return out

    verdicts = {"product": right(ours), "mutagen": right(_mutagen_duration),
                "ffprobe": right(_ffprobe_duration)}
    by_format: dict[str, dict[str, int]] = {}
    for p, fmt in formats.items():
        row = by_format.setdefault(fmt, {"files": 0, "product": 0, "mutagen": 0, "ffprobe": 0})
        row["files"] += 1
        for name, verdict in verdicts.items():
            row[name] += verdict[p]

    ours_rate, _ = _rate(ours, paths, min_seconds)
    mutagen_rate, _ = _rate(_mutagen_duration, paths, min_seconds)
    ffprobe_rate, _ = _rate(_ffprobe_duration, paths, min(min_seconds, 1.0))
    result = {
        "files": len(paths),
        "bytes": sum(p.stat().st_size for p in paths),
        "product_files_s": ours_rate,
        "mutagen_files_s": mutagen_rate,
        "ffprobe_files_s": ffprobe_rate,
        "ratio_vs_mutagen": ratio(ours_rate, mutagen_rate),
        "ratio_vs_ffprobe": ratio(ours_rate, ffprobe_rate),
        "accurate": {name: sum(verdict.values()) for name, verdict in verdicts.items()},
        "accurate_by_format": by_format,
    }
    log(
        f"probe: ours {ours_rate:.0f} files/s, mutagen.File {mutagen_rate:.0f}, "
        f"ffprobe {ffprobe_rate:.0f}; accurate {result['accurate']} of {len(paths)}; by format "
        + ", ".join(f"{fmt} {row['product']}/{row['mutagen']}/{row['ffprobe']} of {row['files']}"
                    for fmt, row in by_format.items())
    )
    return result
