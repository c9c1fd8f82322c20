"""Measuring a recording: format, codec, exact duration, rate, channels, bitrate.

    info = probe_file(path)          # AudioInfo, or raises InvalidAudio

Durations match a full ffmpeg decode (within a few samples on every format the tests
generate); where mutagen's header-based length is an estimate or counts samples a decoder
does not output, the format module computes the exact figure (see each module's docstring):
`mpeg` (MP3/MP2), `adts` (raw AAC), `wav`, `ogg` (Vorbis, Opus), `flac`, `mp4` (M4A, 3GP
with AAC or AMR), `matroska` (WebM/Matroska with Opus or Vorbis), `asf` (WMA), `amr` (AMR-NB,
AMR-WB).

Policy on damaged files: corrupt, truncated (the file ends before what its headers or last
frame announce), zero-length, non-audio or header-only (zero duration) input raises
InvalidAudio with a short reason; nothing else is raised for bad content. A truncated file
is rejected rather than measured: a recording cut short in transit is not the call. Every
read is bounded by the real file size and every loop by the data, so hostile headers cannot
make the probe allocate or spin; memory stays flat whatever the file size (files are
streamed in 1 MiB windows, never read whole).

Opening the file is the caller's business: OSError from open() (missing file, permissions)
propagates unchanged, since it is an infrastructure fault, not bad audio.
"""

from __future__ import annotations

import logging
import os

from call_downloader.audio import adts, amr, asf, flac, matroska, mp4, mpeg, ogg, wav
from call_downloader.audio.common import AudioInfo, BoundedReader, InvalidAudio
from call_downloader.audio.formats import FORMATS, sniff_file

__all__ = ["AudioInfo", "InvalidAudio", "probe_file"]

log = logging.getLogger(__name__)


def probe_file(path: str | os.PathLike[str], fmt: str | None = None) -> AudioInfo:
    """Probe the recording at `path`.

    `fmt` is the format recorded at ingest, if known. The file is sniffed again anyway,
    seeking past ID3 tags of any size (ingest only saw the first bytes), and the format found
    in the file is the one measured and reported.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {FORMATS}")
    with open(path, "rb") as f:
        reader = BoundedReader(f)
        try:
            return _probe(reader, fmt)
        except InvalidAudio:
            raise
        except Exception as exc:  # noqa: BLE001 - bad content must never escape as anything else
            # mutagen errors, struct errors, and anything a hostile file could still provoke.
            log.info("audio probe rejected %s: %r", path, exc)
            raise InvalidAudio("unreadable or corrupt audio") from exc


def _probe(reader: BoundedReader, fmt: str | None) -> AudioInfo:
    if reader.size == 0:
        raise InvalidAudio("empty file")
    found = sniff_file(reader)
    if found is None:
        raise InvalidAudio("not a supported audio format")
    if fmt is not None and fmt != found:
        log.info("audio format recorded as %s but the file is %s", fmt, found)
    reader.seek(0)
    if found == "mp3":
        return mpeg.probe(reader)
    if found == "aac":
        return adts.probe(reader)
    if found == "wav":
        return wav.probe(reader)
    if found in ("ogg", "opus"):
        return ogg.probe(reader, found)
    if found == "flac":
        return flac.probe(reader)
    if found in ("webm", "mka"):
        return matroska.probe(reader, found)
    if found == "wma":
        return asf.probe(reader)
    if found in ("amr", "awb"):
        return amr.probe(reader, found)
    return mp4.probe(reader)
