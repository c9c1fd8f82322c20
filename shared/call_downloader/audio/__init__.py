"""Audio: format sniffing from the bytes and exact duration probing.

    from call_downloader.audio import SNIFF_BYTES, sniff_format, probe_file, InvalidAudio

- `sniff_format(head) -> str | None`: one of FORMATS ("mp3", "wav", "ogg", "opus", "flac",
  "m4a", "aac", "webm", "mka", "wma", "amr", "awb") or None, from the first SNIFF_BYTES bytes
  (ingest: 415 on None).
- `probe_file(path, fmt=None) -> AudioInfo`: format, codec, duration (matching a full
  decode), sample rate, channels, bitrate; raises InvalidAudio (reason code `invalid_audio`)
  for anything that is not a complete recording.
"""

from call_downloader.audio.common import AudioInfo, InvalidAudio
from call_downloader.audio.formats import FORMATS, SNIFF_BYTES, sniff_file, sniff_format
from call_downloader.audio.probe import probe_file

__all__ = [
    "FORMATS",
    "SNIFF_BYTES",
    "AudioInfo",
    "InvalidAudio",
    "probe_file",
    "sniff_file",
    "sniff_format",
]
