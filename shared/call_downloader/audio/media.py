"""How each audio format is named to others: its media type (the Content-Type the browser's
player and the AI get) and its file name extension. Import-light on purpose: the read API
needs these without loading the parsers."""

from __future__ import annotations

# Format (as `sniff_format` names it) -> media type. "mp4" is an older name of "m4a".
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "opus": "audio/ogg; codecs=opus",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "aac": "audio/aac",
    "webm": "audio/webm",
    "mka": "audio/x-matroska",
    "wma": "audio/x-ms-wma",
    "amr": "audio/amr",
    "awb": "audio/amr-wb",
}
# Extensions that differ from the format's name.
_EXTENSIONS = {"mp4": "m4a"}


def media_type(fmt: str | None) -> str:
    """The media type of a recording in format `fmt` (octet-stream when unknown)."""
    return MEDIA_TYPES.get((fmt or "").lower(), "application/octet-stream")


def extension(fmt: str | None) -> str:
    """The file name extension (no dot) for a recording in format `fmt`."""
    fmt = (fmt or "bin").lower()
    return _EXTENSIONS.get(fmt, fmt)
