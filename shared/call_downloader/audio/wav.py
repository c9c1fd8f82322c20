"""RIFF/WAVE (and RF64/BW64): sniffing and the exact duration, telephony codecs included.

mutagen's WAVE length is `data size / block align / sample rate`, right for PCM only: for
ADPCM, GSM and G.722 a block holds many samples, so its figure is off by a factor of up to
500, and it cannot read RF64. This module walks the chunks itself (a few header reads) and
counts samples the way ffmpeg's decoders do:

- PCM, float, A-law, mu-law: whole frames of `block_align` bytes;
- IMA and MS ADPCM: samples per block from the format (the last, partial block counted with
  ffmpeg's formula); GSM 6.10: 320 samples per 65-byte block; G.722 and G.726 from their bit
  rate per sample; MP3 in WAV: its MPEG frames walked.
  The `fact` chunk's count is not used for these: it excludes the padding of the last block,
  which every decoder outputs, so the block count is what matches a full decode;
- any other codec: the `fact` sample count, else the data size over the byte rate.

Truncation: a `data` chunk that declares more bytes than the file holds (by more than one,
the pad byte some writers count) raises InvalidAudio. A size of 0 or 0xFFFFFFFF means "to
the end of the file", as streaming writers (ffmpeg to a pipe) leave it and ffmpeg reads it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from call_downloader.audio import mpeg
from call_downloader.audio.common import AudioInfo, BoundedReader, InvalidAudio, check_duration

MAX_CHUNKS = 10_000
_STREAMING_SIZES = (0, 0xFFFFFFFF)

PCM, ADPCM_MS, FLOAT, ALAW, MULAW, IMA_ADPCM = 0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011
GSM610, G726, G726_ALT, MPEG_L3, MPEG, G722, EXTENSIBLE = (
    0x0031, 0x0045, 0x0064, 0x0055, 0x0050, 0x028F, 0xFFFE)

_NAMES = {
    ADPCM_MS: "adpcm_ms", ALAW: "pcm_alaw", MULAW: "pcm_mulaw", IMA_ADPCM: "adpcm_ima_wav",
    GSM610: "gsm_ms", G726: "adpcm_g726", G726_ALT: "adpcm_g726", G722: "adpcm_g722",
}


def _is_chunk_id(cid: bytes) -> bool:
    return len(cid) == 4 and all(0x20 <= c <= 0x7E for c in cid)


def sniff(head: bytes) -> bool:
    """RIFF/RF64/BW64 with form type WAVE and a well-formed first chunk header."""
    if len(head) < 20 or head[8:12] != b"WAVE":
        return False
    if head[:4] == b"RIFF":
        return _is_chunk_id(head[12:16])
    if head[:4] in (b"RF64", b"BW64"):
        return head[12:16] == b"ds64"
    return False


@dataclass
class _Fmt:
    tag: int
    channels: int
    rate: int
    byte_rate: int
    block_align: int
    bits: int
    samples_per_block: int | None


def _parse_fmt(data: bytes) -> _Fmt:
    if len(data) < 16:
        raise InvalidAudio("WAV fmt chunk too short")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", data)
    extra = b""
    if len(data) >= 18:
        cb = struct.unpack_from("<H", data, 16)[0]
        extra = data[18 : 18 + cb]
    if tag == EXTENSIBLE:
        if len(extra) < 22:
            raise InvalidAudio("WAV extensible fmt chunk too short")
        tag = struct.unpack_from("<H", extra, 6)[0]  # first two bytes of the sub-format GUID
    spb = struct.unpack_from("<H", extra, 0)[0] if tag in (IMA_ADPCM, ADPCM_MS) and len(
        extra) >= 2 else None
    if not 1 <= channels <= 64:
        raise InvalidAudio(f"WAV declares {channels} channels")
    if not 1 <= rate <= 1_536_000:
        raise InvalidAudio(f"WAV declares a sample rate of {rate} Hz")
    return _Fmt(tag, channels, rate, byte_rate, block_align, bits, spb)


def probe(reader: BoundedReader) -> AudioInfo:
    head = reader.pread(0, 12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64", b"BW64"):
        raise InvalidAudio("not a RIFF/WAVE file")
    rf64 = head[:4] != b"RIFF"
    ds64_data_size: int | None = None
    fmt: _Fmt | None = None
    fact: int | None = None
    data_at: int | None = None
    data_size = 0
    pos = 12
    for _ in range(MAX_CHUNKS):
        header = reader.pread(pos, 8)
        if len(header) < 8 or not _is_chunk_id(header[:4]):
            break  # end of file, or trailing junk after the chunks
        cid, size = header[:4], struct.unpack_from("<I", header, 4)[0]
        body = pos + 8
        if cid == b"ds64" and rf64:
            ds = reader.pread(body, 16)
            if len(ds) == 16:
                ds64_data_size = struct.unpack_from("<Q", ds, 8)[0]
        elif cid == b"fmt ":
            fmt = _parse_fmt(reader.pread(body, min(size, 4096)))
        elif cid == b"fact" and size >= 4:
            raw = reader.pread(body, 4)
            if len(raw) == 4:
                fact = struct.unpack("<I", raw)[0]
        elif cid == b"data":
            data_at = body
            if rf64 and size == 0xFFFFFFFF and ds64_data_size is not None:
                data_size = ds64_data_size
            elif size in _STREAMING_SIZES:
                data_size = reader.size - body
                break  # runs to the end of the file: nothing after it
            else:
                data_size = size
            if fmt is not None:
                break
        pos = body + size + (size & 1)
    else:
        raise InvalidAudio("too many WAV chunks")

    if fmt is None:
        raise InvalidAudio("WAV without a fmt chunk")
    if data_at is None:
        raise InvalidAudio("WAV without a data chunk")
    present = max(0, reader.size - data_at)
    if data_size > present:
        if data_size - present > 1:  # one byte of slack: writers that count the pad byte
            raise InvalidAudio(
                f"truncated: the WAV data chunk declares {data_size} bytes, {present} present"
            )
        data_size = present

    if fmt.tag in (MPEG_L3, MPEG):
        info = mpeg.probe_range(reader, data_at, data_at + data_size, vbr_tags=False)
        return AudioInfo("wav", info.codec, info.duration_seconds, info.sample_rate,
                         info.channels, info.bitrate)

    codec, samples = _samples(fmt, data_size, fact)
    duration = check_duration(samples / fmt.rate)
    return AudioInfo(
        format="wav",
        codec=codec,
        duration_seconds=duration,
        sample_rate=fmt.rate,
        channels=fmt.channels,
        bitrate=round(data_size * 8 / duration),
    )


def _samples(fmt: _Fmt, data_size: int, fact: int | None) -> tuple[str, int]:
    """(codec name, samples per channel) of `data_size` bytes of audio in format `fmt`."""
    ch, align, bits = fmt.channels, fmt.block_align, fmt.bits
    if fmt.tag in (PCM, FLOAT, ALAW, MULAW):
        width = {PCM: (8, 16, 24, 32), FLOAT: (32, 64), ALAW: (8,), MULAW: (8,)}[fmt.tag]
        if bits not in width:
            raise InvalidAudio(f"WAV codec 0x{fmt.tag:04x} with {bits} bits per sample")
        if align != ch * bits // 8:
            raise InvalidAudio("WAV block align does not match the sample format")
        if fmt.tag == PCM:
            codec = "pcm_u8" if bits == 8 else f"pcm_s{bits}le"
        elif fmt.tag == FLOAT:
            codec = f"pcm_f{bits}le"
        else:
            codec = _NAMES[fmt.tag]
        return codec, data_size // align

    blocks, rest = divmod(data_size, align) if align else (0, 0)
    if fmt.tag == IMA_ADPCM:
        if bits != 4 or align <= 4 * ch:
            raise InvalidAudio("unsupported IMA ADPCM layout")
        spb = (align - 4 * ch) * 8 // (4 * ch) + 1
        if fmt.samples_per_block not in (None, spb):
            raise InvalidAudio("IMA ADPCM samples per block do not match the block size")
        tail = 1 + (rest - 4 * ch) // (4 * ch) * 8 if rest >= 4 * ch else 0
        return _NAMES[IMA_ADPCM], blocks * spb + tail
    if fmt.tag == ADPCM_MS:
        if align <= 7 * ch:
            raise InvalidAudio("unsupported MS ADPCM layout")
        spb = (align - 6 * ch) * 2 // ch
        if fmt.samples_per_block not in (None, spb):
            raise InvalidAudio("MS ADPCM samples per block do not match the block size")
        tail = (rest - 6 * ch) * 2 // ch if rest >= 7 * ch else 0
        return _NAMES[ADPCM_MS], blocks * spb + tail
    if fmt.tag == GSM610:
        if align != 65 * ch:
            raise InvalidAudio("unsupported GSM 6.10 layout")
        return _NAMES[GSM610], blocks * 320
    if fmt.tag == G722:
        return _NAMES[G722], data_size * 2 // ch
    if fmt.tag in (G726, G726_ALT):
        if bits not in (2, 3, 4, 5):
            raise InvalidAudio("unsupported G.726 layout")
        return _NAMES[fmt.tag], data_size * 8 // bits // ch
    # Other codecs: trust the fact chunk, else assume a constant bit rate.
    codec = f"wav_0x{fmt.tag:04x}"
    if fact:
        return codec, fact
    if fmt.byte_rate:
        return codec, data_size * fmt.rate // fmt.byte_rate
    raise InvalidAudio(f"cannot size WAV codec 0x{fmt.tag:04x}")
