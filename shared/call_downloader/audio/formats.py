"""Deciding the audio format from the bytes alone (never the file name or declared type).

    fmt = sniff_format(first_bytes)   # first SNIFF_BYTES of the upload (or all of it)

returns one of FORMATS or None. A file is audio only if it *starts* as audio: a container
signature at byte 0 (RIFF/RF64 WAVE, Ogg with a Vorbis or Opus header, fLaC, an MP4 ftyp with
an audio brand, an EBML header with DocType webm or matroska, the ASF header object, the AMR
or AMR-WB magic), or MPEG/ADTS frames at byte 0 or right after ID3v2 tags, where several
consecutive frame headers must agree (a lone 0xFFE sync is 1 in 2000 random bytes). So junk,
HTML or a ZIP with an MP3 frame somewhere inside is rejected.

One case cannot be settled from a head: an ID3v2 tag (cover art) larger than the head. A
well-formed tag is then taken for MP3 (by far the usual case); `probe_file` re-sniffs past
the tag, so a file that is something else after all fails there with InvalidAudio.
`sniff_file` sniffs a file on disk, seeking past tags.
"""

from __future__ import annotations

import os

from call_downloader.audio import adts, amr, asf, flac, matroska, mp4, ogg, wav
from call_downloader.audio import mpeg as mpeg_audio
from call_downloader.audio.common import MAX_ID3_PADDING, MAX_ID3_TAGS, BoundedReader, id3v2_size

#: Leading bytes `sniff_format` looks at (an upload shorter than this is passed whole).
SNIFF_BYTES = 64 * 1024

#: Every format `sniff_format` can return: MP3 (and MP1/MP2), WAV, Ogg Vorbis, Ogg Opus,
#: FLAC, MP4/M4A/3GP (AAC, AMR, ...), ADTS AAC, WebM, Matroska, WMA (ASF), AMR-NB, AMR-WB.
FORMATS = ("mp3", "wav", "ogg", "opus", "flac", "m4a", "aac", "webm", "mka", "wma", "amr",
           "awb")
#: FORMATS as people name them (the 415 answer lists these).
FORMAT_NAMES = ("MP3, WAV, Ogg Vorbis/Opus, FLAC, M4A/MP4/3GP (AAC, AMR), ADTS AAC, "
                "WebM/Matroska (Opus, Vorbis), WMA, AMR-NB/WB")
# Leading bytes after which only the container's own sniffer decides.
_CONTAINER_MAGICS = (b"RIFF", b"RF64", b"BW64", b"OggS", b"fLaC", b"\x1a\x45\xdf\xa3",
                     asf.HEADER[:4], b"#!AM")

# Reported for a head that ends inside a well-formed ID3v2 tag (see module doc).
_TAGGED = "mp3"
# Bytes after the tags needed to judge the frames (several of the longest MPEG frames).
_JUDGE_BYTES = 8 * 1024


def sniff_format(head: bytes) -> str | None:
    """The audio format `head` (the start of a file) is in, or None for anything else.

    Pass the first SNIFF_BYTES bytes, or the whole file when it is shorter: a head shorter
    than SNIFF_BYTES is taken to be the whole file.
    """
    at_eof = len(head) < SNIFF_BYTES
    head = bytes(head[:SNIFF_BYTES])
    container = _sniff_container(head)
    if container is not None or head[:4] in _CONTAINER_MAGICS:
        return container
    start = 0
    for _ in range(MAX_ID3_TAGS):
        size = id3v2_size(head[start : start + 10])
        if size is None:
            break
        if not _id3_frames_plausible(head, start, start + size):
            return None
        start += size
        if start >= len(head):
            break
    else:
        return None
    if start:
        start = _skip_padding(head, start)
        if not at_eof and len(head) - start < _JUDGE_BYTES:
            return _TAGGED  # the audio after the tag is beyond the head
    return _sniff_frames(head[start:], at_eof)


def sniff_file(path: str | os.PathLike[str] | BoundedReader) -> str | None:
    """`sniff_format` for a file on disk, looking past ID3v2 tags of any size."""
    if isinstance(path, BoundedReader):
        return _sniff_reader(path)
    with open(path, "rb") as f:
        return _sniff_reader(BoundedReader(f))


def _sniff_reader(reader: BoundedReader) -> str | None:
    head = reader.pread(0, SNIFF_BYTES)
    fmt = sniff_format(head)
    if fmt != _TAGGED or id3v2_size(head[:10]) is None:
        return fmt
    # Skip the tag(s) by seeking and look at what follows.
    start = 0
    for _ in range(MAX_ID3_TAGS):
        size = id3v2_size(reader.pread(start, 10))
        if size is None:
            break
        start += size
    else:
        return None
    window = reader.pread(start, MAX_ID3_PADDING + SNIFF_BYTES)
    skip = _skip_padding(window, 0)
    window = window[skip : skip + SNIFF_BYTES]
    return _sniff_frames(window, at_eof=start + skip + len(window) >= reader.size)


def _sniff_container(head: bytes) -> str | None:
    if wav.sniff(head):
        return "wav"
    if head[:4] == b"OggS":
        return ogg.sniff(head)
    if flac.sniff(head):
        return "flac"
    if mp4.sniff(head):
        return "m4a"
    if asf.sniff(head):
        return "wma"
    return matroska.sniff(head) or amr.sniff(head)


def _sniff_frames(window: bytes, at_eof: bool) -> str | None:
    """What follows the ID3v2 tags (or starts the file): FLAC, MPEG audio or ADTS AAC."""
    if not window:
        return None
    if flac.sniff(window):
        return "flac"
    if mpeg_audio.sniff(window, at_eof):
        return "mp3"
    if adts.sniff(window, at_eof):
        return "aac"
    return None


def _skip_padding(data: bytes, start: int) -> int:
    """Skip the zero bytes some taggers leave after a tag without counting them."""
    end = min(len(data), start + MAX_ID3_PADDING)
    pos = start
    while pos < end and data[pos] == 0:
        pos += 1
    return pos


def _id3_frames_plausible(head: bytes, start: int, end: int) -> bool:
    """Whether the frames of the ID3v2 tag at `start` that lie within `head` look like ID3
    frames (upper-case/digit ids, sizes inside the tag) up to the padding: "ID3" plus a valid
    header in front of arbitrary bytes is not enough to call a file audio."""
    major, flags = head[start + 3], head[start + 5]
    if flags & 0x80 and major < 4:
        return True  # whole-tag unsynchronisation may alter frame headers: do not judge
    pos = start + 10
    if flags & 0x40 and major >= 3:  # extended header
        if len(head) < pos + 4:
            return True
        raw = head[pos : pos + 4]
        ext = ((raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]) if major == 4 else (
            int.from_bytes(raw, "big") + 4)
        pos += ext
    id_len, header_len = (3, 6) if major == 2 else (4, 10)
    limit = min(end, len(head))
    while pos + header_len <= limit:
        frame_id = head[pos : pos + id_len]
        if frame_id[0] == 0:
            return True  # padding
        if not all(0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A for c in frame_id):
            return False
        raw = head[pos + id_len : pos + id_len + (3 if major == 2 else 4)]
        if major == 4:
            if any(b & 0x80 for b in raw):
                return False
            size = (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]
        else:
            size = int.from_bytes(raw, "big")
        pos += header_len + size
        if pos > end:
            return False
    return True
