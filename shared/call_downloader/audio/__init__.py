"""Audio: format sniffing from the bytes and exact duration probing.

    from call_downloader.audio import SNIFF_BYTES, sniff_format, probe_file, InvalidAudio

- `sniff_format(head) -> str | None`: one of FORMATS ("mp3", "wav", "ogg", "opus", "flac",
  "m4a", "aac", "webm", "mka", "wma", "amr", "awb") or None, from the first SNIFF_BYTES bytes
  (ingest: 415 on None).
- `probe_file(path, fmt=None) -> AudioInfo`: format, codec, duration (matching a full
  decode), sample rate, channels, bitrate; raises InvalidAudio (reason code `invalid_audio`)
  for anything that is not a complete recording.
- `media.media_type(fmt)`, `media.extension(fmt)`: how a format is named to browsers and AIs.

The names are loaded on first use, so that importing `call_downloader.audio.media` does not
load the parsers (and mutagen).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from call_downloader.audio.common import AudioInfo, InvalidAudio
    from call_downloader.audio.formats import FORMATS, SNIFF_BYTES, sniff_file, sniff_format
    from call_downloader.audio.probe import probe_file

_HOMES = {
    "AudioInfo": "common",
    "InvalidAudio": "common",
    "FORMATS": "formats",
    "SNIFF_BYTES": "formats",
    "sniff_file": "formats",
    "sniff_format": "formats",
    "probe_file": "probe",
}

__all__ = [
    "FORMATS",
    "SNIFF_BYTES",
    "AudioInfo",
    "InvalidAudio",
    "probe_file",
    "sniff_file",
    "sniff_format",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
