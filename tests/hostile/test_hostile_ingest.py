"""Hostile input at ingest (POST /api/v1/calls, multipart and JSON) and at the AI callback.

Each case gets a clear 4xx and leaves nothing behind (no call, chunk, outbox row, timeline entry
or cached blob), or it is accepted and then ends as a `failed` call with a reason (or measured,
when the bytes really are audio). Nothing here connects to a non-loopback address: SSRF
verdicts on other addresses are reached without connecting (`no_outbound` would record it).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import threading
import uuid

import pytest
from audio_fixtures import make_fixture, truncated_copy
from hostile_helpers import assert_clear_refusal, footprint
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

CALLS = "/api/v1/calls"


@pytest.fixture
def wav() -> bytes:
    return make_fixture("wav_pcm16_8k").read_bytes()


def upload(client, person, data: bytes, name: str = "a.wav", ctype: str = "audio/wav", **fields):
    form = {"file": (io.BytesIO(data), name, ctype), **fields}
    return client.post(CALLS, headers=person.headers, data=form, content_type="multipart/form-data")


def raw_multipart(client, person, body: bytes, boundary: str = "XyZ"):
    headers = {**person.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return client.post(CALLS, headers=headers, data=body)


def part(name: str, value: bytes, filename: str | None = None, boundary: str = "XyZ") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def refused_cleanly(response, *statuses: int, before: dict[str, int]) -> None:
    assert_clear_refusal(response, *statuses)
    assert footprint() == before


def run_analyze(call_id: str) -> dict:
    """Run analyze-duration on the call's outbox event (as the dispatcher would)."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call, OutboxEvent
    from call_downloader.events import outbox
    from call_downloader.events import types as ev
    from call_downloader.pipeline import analyze

    with unit_of_work() as session:
        row = session.query(OutboxEvent).filter(OutboxEvent.subject == call_id).one()
        body = ev.to_json_bytes(outbox.to_envelope(row))
    analyze.handle(ev.parse_structured(body))
    with unit_of_work() as session:
        call = session.get(Call, uuid.UUID(call_id))
        return {"status": call.status, "reason": call.error_reason, "detail": call.error_detail}


# -- not audio, whatever the name and type say -------------------------------------------------
NOT_AUDIO = {
    "html as mp3": (b"<!doctype html><html>" + b"x" * 5000, "page.mp3", "audio/mpeg"),
    "pdf as wav": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 5000, "doc.wav", "audio/wav"),
    "zip as m4a": (b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 5000, "a.m4a", "audio/mp4"),
    "png as ogg": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 5000, "a.ogg", "audio/ogg"),
    "elf as flac": (b"\x7fELF\x02\x01\x01" + b"\x00" * 5000, "a.flac", "audio/flac"),
    "script as aac": (b"#!/bin/sh\nrm -rf / --no-preserve-root\n" * 200, "a.aac", "audio/aac"),
    "avi in riff": (b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x00" * 5000, "a.wav", "audio/wav"),
    "gif then mp3": (b"GIF89a" + b"\xff\xfb\x90\x64" * 2000, "a.mp3", "audio/mpeg"),
}


@pytest.mark.parametrize("case", sorted(NOT_AUDIO))
def test_non_audio_with_audio_names_and_types_is_415(clients, people, case):
    data, name, ctype = NOT_AUDIO[case]
    before = footprint()
    response = upload(clients["ingest"], people["source"], data, name, ctype)
    refused_cleanly(response, 415, before=before)
    for named in ("MP3", "WAV", "WebM", "WMA", "AMR"):  # the answer says what would do
        assert named in response.get_json()["error"]["message"]


def test_zero_length_and_tiny_files_are_refused(clients, people):
    before = footprint()
    empty = part("file", b"", "a.wav") + b"--XyZ--\r\n"
    refused_cleanly(raw_multipart(clients["ingest"], people["source"], empty), 422, before=before)
    for tiny in (b"I", b"ID3", b"RIFF", b"OggS", b"\xff\xfb"):
        response = upload(clients["ingest"], people["source"], tiny)
        refused_cleanly(response, 415, 422, before=before)


def _lying_inputs(wav: bytes) -> dict[str, bytes]:
    header = bytearray(wav[:44])
    huge_data = bytearray(wav)
    struct.pack_into("<I", huge_data, 40, 0xFFFFFFF0)  # data chunk claims ~4 GB
    huge_riff = bytearray(wav)
    struct.pack_into("<I", huge_riff, 4, 0xFFFFFFF0)
    return {
        "wav header only": bytes(header),
        "wav data size lies": bytes(huge_data),
        "wav riff size lies": bytes(huge_riff),
        "wav truncated": wav[: len(wav) // 3],
        "mp3 truncated": truncated_copy("mp3_cbr", 0.3).read_bytes(),
        "id3 then html": b"ID3\x04\x00\x00\x00\x00\x10\x00" + b"<html>" + b"x" * 8000,
        "id3 size lies": b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\x00" * 3000,
        "ogg then junk": b"OggS\x00\x02" + b"\x00" * 20 + b"junk" * 2000,
        "flac then junk": b"fLaC\x00\x00\x00\x22" + b"\xff" * 6000,
        "m4a then junk": b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 6000,
        "wav then zip": wav + b"PK\x03\x04" + b"\x00" * 2000,
        "adts then junk": b"\xff\xf1\x50\x80" + b"\x00" * 6000,
        "utf-16 text (ff fe looks like an mpeg sync)": "hello world".encode("utf-16") * 500,
    }


def test_truncated_lying_and_polyglot_audio_is_refused_or_fails_with_a_reason(clients, people, wav):
    outcomes = {}
    for case, data in _lying_inputs(wav).items():
        before = footprint()
        response = upload(clients["ingest"], people["source"], data, "a.bin")
        if response.status_code == 202:
            result = run_analyze(response.get_json()["id"])
            assert result["status"] in ("analyzed", "failed"), (case, result)
            if result["status"] == "failed":
                assert result["reason"] == "invalid_audio" and result["detail"], (case, result)
            outcomes[case] = result["status"]
        else:
            refused_cleanly(response, 415, 422, before=before)
            outcomes[case] = response.status_code
    # The lies about sizes must not pass as audio.
    for case in (
        "wav header only",
        "id3 then html",
        "id3 size lies",
        "ogg then junk",
        "utf-16 text (ff fe looks like an mpeg sync)",
    ):
        assert outcomes[case] in ("failed", 415, 422), (case, outcomes[case])


def test_oversized_uploads_are_413(clients, people, wav, monkeypatch):
    from call_downloader.config import reset_settings

    monkeypatch.setenv("MAX_UPLOAD_BYTES", "50000")
    reset_settings()
    big = wav + b"\x00" * (60000 - len(wav))
    before = footprint()
    refused_cleanly(upload(clients["ingest"], people["source"], big), 413, before=before)


FILENAMES = [
    "../../../../etc/passwd.wav",
    "..\\..\\windows\\win.ini.wav",
    "/absolute/path/a.wav",
    "a\r\nContent-Type: text/html\r\n.wav",
    "nul\x00byte.wav",
    "tab\tand\x1bescape.wav",
    "\u202etxt.wav",
    "....wav",
    ".hidden.wav",
    "C:\\Users\\x\\a.wav",
    "x" * 5000 + ".wav",
    "%2e%2e%2fetc%2fpasswd.wav",
    "<script>alert(1)</script>.wav",
    "' OR 1=1 --.wav",
]


@pytest.mark.parametrize("name", FILENAMES, ids=range(len(FILENAMES)))
def test_hostile_file_names_are_kept_as_safe_display_names(clients, people, wav, name):
    before = footprint()
    response = upload(clients["ingest"], people["source"], wav, name)
    if response.status_code >= 400:  # a name the multipart layer itself refuses
        refused_cleanly(response, before=before)
        return
    assert response.status_code == 202, response.get_json()
    stored = response.get_json()["filename"]
    if stored is not None:
        assert "/" not in stored and "\\" not in stored and len(stored) <= 255
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in stored)
        assert not stored.startswith(".")


def test_malformed_multipart_is_400_or_422(clients, people, wav):
    client, person = clients["ingest"], people["source"]
    before = footprint()
    no_boundary = {**person.headers, "Content-Type": "multipart/form-data"}
    refused_cleanly(client.post(CALLS, headers=no_boundary, data=b"x"), 400, before=before)
    wrong = part("file", wav, "a.wav", boundary="Other") + b"--Other--\r\n"
    refused_cleanly(raw_multipart(client, person, wrong), 400, 422, before=before)
    truncated = part("file", wav, "a.wav")[:-2]  # no closing boundary: the upload was cut
    refused_cleanly(raw_multipart(client, person, truncated), 400, before=before)
    cut_mid_file = '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"'
    cut_mid_file = cut_mid_file.encode() + b"\r\n\r\n" + wav[: len(wav) // 2]
    refused_cleanly(raw_multipart(client, person, cut_mid_file), 400, before=before)
    two_files = part("file", wav, "a.wav") + part("file", wav, "b.wav") + b"--XyZ--\r\n"
    refused_cleanly(raw_multipart(client, person, two_files), 422, before=before)
    garbage_headers = b"--XyZ\r\n\x00\x01\x02garbage\r\n\r\n" + wav + b"\r\n--XyZ--\r\n"
    refused_cleanly(raw_multipart(client, person, garbage_headers), 400, 422, before=before)
    huge_header = b"--XyZ\r\nX-Pad: " + b"a" * 200_000 + b"\r\n\r\n" + wav + b"\r\n--XyZ--\r\n"
    refused_cleanly(raw_multipart(client, person, huge_header), 400, 413, 422, before=before)
    # And the well-formed body still goes through (the cases above fail for their reason).
    good = part("file", wav, "a.wav") + b"--XyZ--\r\n"
    assert raw_multipart(client, person, good).status_code == 202


class Trickle(io.BytesIO):
    """A request body handed out `step` bytes per read, as a slow network would."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def trickled_multipart(client, person, body: bytes, step: int):
    headers = {
        **person.headers,
        "Content-Type": "multipart/form-data; boundary=XyZ",
        "Content-Length": str(len(body)),
    }
    return client.post(CALLS, headers=headers, input_stream=Trickle(body, step))


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_an_upload_read_in_small_pieces_stores_exactly_what_was_sent(clients, people, wav, step):
    """Every delimiter and part's headers cut across reads somewhere (werkzeug 3.1.9's
    decoder adds a CR to a part cut just after `CRLF--boundary-`: pallets/werkzeug#3285)."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call

    audio = wav[:6000]
    file_part = '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="r.wav"\r\n'
    body = (
        part("external_id", f"trickle-{step}".encode())
        + file_part.encode()
        + b"Content-Type: audio/x-wav\r\n\r\n"
        + audio
        + b"\r\n"
        + part("metadata", b'{"step": ' + str(step).encode() + b"}")
        + b"--XyZ--\r\n"
    )
    response = trickled_multipart(clients["ingest"], people["source"], body, step)
    assert response.status_code == 202, response.get_json()
    stored = response.get_json()
    assert stored["sha256"] == hashlib.sha256(audio).hexdigest()
    assert stored["size_bytes"] == len(audio)
    assert stored["external_id"] == f"trickle-{step}"
    assert stored["metadata"] == {"step": step}
    assert stored["filename"] == "r.wav"
    with unit_of_work() as session:
        call = session.get(Call, uuid.UUID(stored["id"]))
        assert call.declared_content_type == "audio/x-wav"


def test_a_body_that_does_not_end_with_its_closing_boundary_is_400(clients, people, wav):
    """Even when the file part itself is whole: what follows it was cut (streaming-form-data
    accepted these, without the fields after the file)."""
    client, person = clients["ingest"], people["source"]
    before = footprint()
    file_part = part("file", wav, "a.wav")
    for body in (
        file_part + b"--XyZ\r\n",  # a delimiter, no closing boundary
        file_part + part("external_id", b"ext-1")[:-4],  # cut inside the next part
        file_part + b"--XyZ-",  # cut inside the closing boundary
    ):
        refused_cleanly(raw_multipart(client, person, body), 400, before=before)
    assert raw_multipart(client, person, file_part + b"--XyZ--").status_code == 202


MULTIPART_EDGES = {
    # (body, status): refused ones leave nothing behind
    "header bytes not UTF-8 (were a 500)": (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="\xe9.wav"\r\n\r\n',
        400,
    ),
    "a preamble": (b"preamble\r\n" + part("file", b"{wav}", "a.wav"), 400),
    "a part's headers over 64 KiB": (b"--XyZ\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\nx\r\n", 413),
    "not form-data": (b'--XyZ\r\nContent-Disposition: attachment; name="file"\r\n\r\nx\r\n', 400),
    "CRLFs first": (b"\r\n\r\n" + part("file", b"{wav}", "a.wav"), 202),
    "a part without Content-Disposition is skipped": (
        b"--XyZ\r\nX-Note: none\r\n\r\nskipped\r\n" + part("file", b"{wav}", "a.wav"),
        202,
    ),
    "unknown and unnamed parts are skipped": (
        part("other", b"x" * 100_000, "o.bin")
        + b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nno name\r\n"
        + part("file", b"{wav}", "a.wav"),
        202,
    ),
}


@pytest.mark.parametrize("case", sorted(MULTIPART_EDGES))
def test_multipart_edges_get_clear_answers(clients, people, wav, case):
    template, status = MULTIPART_EDGES[case]
    if b"{wav}" in template:
        body = template.replace(b"{wav}", wav) + b"--XyZ--\r\n"
    else:
        body = template + wav + b"\r\n--XyZ--\r\n"
    before = footprint()
    response = raw_multipart(clients["ingest"], people["source"], body)
    if status != 202:
        refused_cleanly(response, status, before=before)
        return
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["sha256"] == hashlib.sha256(wav).hexdigest()


def test_what_follows_the_closing_boundary_is_ignored(clients, people, wav):
    """streaming-form-data appended such an epilogue to the file."""
    body = part("file", wav, "a.wav") + b"--XyZ--\r\nepilogue\r\n--XyZ\r\nmore--XyZ--\r\n"
    response = raw_multipart(clients["ingest"], people["source"], body)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["sha256"] == hashlib.sha256(wav).hexdigest()


METADATA = {
    "not json": ("{bad", 422),
    "a list": ("[1, 2]", 422),
    "a string": ('"text"', 422),
    "nan": ('{"a": NaN}', 422),
    "infinity": ('{"a": -Infinity}', 422),
    "nul character": ('{"a": "x\\u0000y"}', 422),
    "nul in a key": ('{"\\u0000": 1}', 422),
    "lone surrogate": ('{"a": "\\ud800"}', 422),
    "deeply nested": ("[" * 30000 + "]" * 30000, 422),
    "nested 100 deep": ('{"a":' * 100 + "1" + "}" * 100, 422),
    "huge": (json.dumps({"k": "v" * 70_000}), 413),
    "not utf-8": (b'{"a": "\xff\xfe"}', 422),
}


@pytest.mark.parametrize("case", sorted(METADATA))
def test_hostile_metadata_is_refused_and_leaves_nothing(clients, people, wav, case):
    value, status = METADATA[case]
    before = footprint()
    response = upload(clients["ingest"], people["source"], wav, metadata=value)
    refused_cleanly(response, status, before=before)


INJECTION_IDS = [
    "' OR '1'='1",
    "1; DROP TABLE calls; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "../../etc/passwd",
    "%00%0d%0a",
    "{{7*7}}",
    "a" * 255,
]


@pytest.mark.parametrize("value", INJECTION_IDS, ids=range(len(INJECTION_IDS)))
def test_injection_strings_as_external_id_are_plain_data(clients, people, wav, value):
    client, person = clients["ingest"], people["source"]
    first = upload(client, person, wav, external_id=value)
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["external_id"] == value
    again = upload(client, person, wav, external_id=value)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert footprint()["calls"] == 1


@pytest.mark.parametrize(
    "value", ["a\x00b", "line\r\nbreak", "tab\there", "é", "a" * 256, " leading"]
)
def test_unprintable_or_long_ids_are_422(clients, people, wav, value):
    client, person = clients["ingest"], people["source"]
    before = footprint()
    refused_cleanly(upload(client, person, wav, external_id=value), 422, before=before)
    if "\x00" in value or "\n" in value:
        return  # an HTTP header cannot even carry these
    headers = {**person.headers, "Idempotency-Key": value}
    form = {"file": (io.BytesIO(wav), "a.wav")}
    response = client.post(CALLS, headers=headers, data=form, content_type="multipart/form-data")
    refused_cleanly(response, 400, 422, before=before)


JSON_BODIES = {
    "not json": (b"{bad", 400),
    "deeply nested": (b"[" * 50000 + b"]" * 50000, 400),
    "nan": (b'{"audio_url": "http://127.0.0.1/a.wav", "metadata": {"a": NaN}}', 400),
    "nul in metadata": (b'{"audio_url": "http://127.0.0.1/", "metadata": {"a": "\\u0000"}}', 400),
    "a list": (b'[{"audio_url": "http://127.0.0.1/a.wav"}]', 422),
    "no url": (b'{"external_id": "x"}', 422),
    "url not a string": (b'{"audio_url": ["http://127.0.0.1/"]}', 422),
    "url too long": (json.dumps({"audio_url": "http://127.0.0.1/" + "a" * 5000}).encode(), 422),
    "external id object": (b'{"audio_url": "http://127.0.0.1/", "external_id": {"$ne": 1}}', 422),
    "metadata string": (b'{"audio_url": "http://127.0.0.1/", "metadata": "x"}', 422),
    "too large": (json.dumps({"audio_url": "http://127.0.0.1/", "m": "x" * 200_000}).encode(), 413),
    "utf-16": ('{"audio_url": "http://127.0.0.1/"}'.encode("utf-16"), (400, 422)),
}


@pytest.mark.parametrize("case", sorted(JSON_BODIES))
def test_hostile_json_bodies_are_refused(clients, people, no_outbound, case):
    body, status = JSON_BODIES[case]
    statuses = status if isinstance(status, tuple) else (status,)
    before = footprint()
    response = clients["ingest"].post(
        CALLS, headers=people["source"].headers, data=body, content_type="application/json"
    )
    refused_cleanly(response, *statuses, before=before)
    assert no_outbound == []


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "audio/wav", "application/xml"]
)
def test_other_content_types_are_415(clients, people, wav, ctype):
    before = footprint()
    response = clients["ingest"].post(
        CALLS, headers=people["source"].headers, data=wav, content_type=ctype
    )
    refused_cleanly(response, 415, before=before)


SSRF_URLS = [
    "http://127.0.0.1/a.wav",
    "http://localhost/a.wav",
    "http://LOCALHOST./a.wav",
    "http://sub.localhost/a.wav",
    "http://127.1/a.wav",
    "http://127.000.000.001/a.wav",
    "http://2130706433/a.wav",
    "http://0x7f000001/a.wav",
    "http://0x7f.0.0.1/a.wav",
    "http://0177.0.0.1/a.wav",
    "http://017700000001/a.wav",
    "http://[::1]/a.wav",
    "http://[0:0:0:0:0:0:0:1]/a.wav",
    "http://[::ffff:127.0.0.1]/a.wav",
    "http://[::ffff:7f00:1]/a.wav",
    "http://[::127.0.0.1]/a.wav",
    "http://0.0.0.0/a.wav",
    "http://0/a.wav",
    "http://[::]/a.wav",
    "http://10.0.0.1/a.wav",
    "http://10.255.255.255/a.wav",
    "http://172.16.0.1/a.wav",
    "http://172.31.255.254/a.wav",
    "http://192.168.1.1/a.wav",
    "http://100.64.0.1/a.wav",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1/a.wav",
    "http://[fe80::1]/a.wav",
    "http://[fe80::1%25eth0]/a.wav",
    "http://[fd00::1]/a.wav",
    "http://[fc00::1]/a.wav",
    "http://[::ffff:10.0.0.1]/a.wav",
    "http://[::ffff:169.254.169.254]/a.wav",
    "http://[64:ff9b::a00:1]/a.wav",
    "http://[2002:a00:1::]/a.wav",
    "http://224.0.0.1/a.wav",
    "http://255.255.255.255/a.wav",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://user:pass@127.0.0.1/a.wav",
    "http://127.0.0.1:6379/",
    "http://127.0.0.1#@example.com/a.wav",
    "http://example.com@127.0.0.1/a.wav",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "dict://127.0.0.1:11211/stats",
    "ftp://127.0.0.1/a.wav",
    "jar:http://127.0.0.1!/a.wav",
    "http:///a.wav",
    "http://[::1/a.wav",
    "//127.0.0.1/a.wav",
    "http://127.0.0.1\r\nHost: x/a.wav",
]


@pytest.mark.parametrize("url", SSRF_URLS, ids=range(len(SSRF_URLS)))
def test_ssrf_targets_in_audio_url_are_refused_without_connecting(
    clients, people, no_outbound, url
):
    before = footprint()
    response = clients["ingest"].post(
        CALLS, headers=people["source"].headers, json={"audio_url": url, "external_id": "s"}
    )
    refused_cleanly(response, 422, before=before)
    assert no_outbound == []


PRIVATE_NAMES = {
    "pbx.example.test": ["10.1.2.3"],
    "rebind.example.test": ["93.184.216.34", "127.0.0.1"],
    "meta.example.test": ["169.254.169.254"],
    "mapped.example.test": ["::ffff:192.168.0.10"],
    "ula.example.test": ["fd12:3456::1"],
    "scoped.example.test": ["fe80::1%eth0"],
    "cgnat.example.test": ["100.100.100.200"],
    "nat64.example.test": ["64:ff9b::a9fe:a9fe"],
}


@pytest.mark.parametrize("host", sorted(PRIVATE_NAMES))
def test_names_resolving_to_private_addresses_are_refused(
    clients, people, no_outbound, monkeypatch, host
):
    # This machine's DNS cannot be made to answer these names: the resolver is injected.
    from call_downloader.net import ssrf

    monkeypatch.setattr(ssrf, "default_resolver", lambda name, port: PRIVATE_NAMES[name])
    before = footprint()
    response = clients["ingest"].post(
        CALLS, headers=people["source"].headers, json={"audio_url": f"http://{host}/a.wav"}
    )
    refused_cleanly(response, 422, before=before)
    assert no_outbound == []


@pytest.fixture
def redirector():
    """A loopback server answering every path with a redirect to the address in the path."""
    hits: list[str] = []

    def app(environ, start_response):
        hits.append(environ["PATH_INFO"])
        target = environ["PATH_INFO"][len("/to/") :]
        return Response("", 302, headers={"Location": target.replace("|", "/")})(
            environ, start_response
        )

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, hits
    server.shutdown()


@pytest.mark.parametrize(
    "target",
    [
        "http:||169.254.169.254|latest|meta-data|",
        "http:||10.0.0.1|a.wav",
        "http:||[::ffff:127.0.0.1]|a.wav",
        "http:||127.0.0.1:1|a.wav",
        "file:|||etc|passwd",
    ],
)
def test_redirects_are_never_followed(
    clients, people, no_outbound, monkeypatch, redirector, target
):
    from call_downloader.config import reset_settings

    monkeypatch.setenv("AUDIO_URL_ALLOWLIST", "127.0.0.1:*")  # the redirector itself is allowed
    reset_settings()
    port, hits = redirector
    before = footprint()
    response = clients["ingest"].post(
        CALLS,
        headers=people["source"].headers,
        json={"audio_url": f"http://127.0.0.1:{port}/to/{target}"},
    )
    refused_cleanly(response, 422, before=before)
    assert len(hits) == 1 and no_outbound == []


# -- the AI callback ---------------------------------------------------------------------------
@pytest.fixture
def waiting_call(clients, people, wav):
    """A call waiting for an asynchronous AI result, and its callback token."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call
    from call_downloader.pipeline import ai_callback

    response = upload(clients["ingest"], people["source"], wav)
    call_id = uuid.UUID(response.get_json()["id"])
    token, jti = ai_callback.make_token(call_id, 1, 600)
    with unit_of_work() as session:
        call = session.get(Call, call_id)
        call.status, call.ai_callback_jti, call.duration_seconds = "processing", jti, 1.0
    return call_id, token


CALLBACK_BODIES = {
    "not json": (b"<html>oops</html>", 400),
    "a list": (b"[1, 2]", 422),
    "nan": (b'{"score": NaN}', 422),
    "nul": (b'{"transcript": "a\\u0000b"}', 422),
    "lone surrogate": (b'{"transcript": "\\udfff"}', 422),
    "nested 100 deep": (b'{"a":' * 100 + b"1" + b"}" * 100, 422),
}


@pytest.mark.parametrize("case", sorted(CALLBACK_BODIES))
def test_hostile_ai_callbacks_are_refused_and_the_call_still_waits(clients, waiting_call, case):
    call_id, token = waiting_call
    body, status = CALLBACK_BODIES[case]
    before = footprint()
    response = clients["ingest"].post(
        f"/api/v1/ai/callback?token={token}", data=body, content_type="application/json"
    )
    refused_cleanly(response, status, before=before)
    good = clients["ingest"].post(f"/api/v1/ai/callback?token={token}", json={"ok": True})
    assert good.status_code == 200, good.get_json()


@pytest.mark.parametrize(
    "token",
    ["", "x", "A" * 5000, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "' OR 1=1 --", "%00"],
)
def test_bad_callback_tokens_are_401(clients, waiting_call, token):
    before = footprint()
    response = clients["ingest"].post(f"/api/v1/ai/callback?token={token}", json={"ok": True})
    refused_cleanly(response, 401, before=before)


def test_an_access_token_is_not_a_callback_token(clients, people, waiting_call):
    token = people["admin"].token
    response = clients["ingest"].post(f"/api/v1/ai/callback?token={token}", json={"ok": True})
    assert_clear_refusal(response, 401)


def test_deeply_nested_callback_is_a_4xx(clients, waiting_call):
    _, token = waiting_call
    response = clients["ingest"].post(
        f"/api/v1/ai/callback?token={token}", data=b"[" * 50000, content_type="application/json"
    )
    assert 400 <= response.status_code < 500


class _BodyNeverRead(io.RawIOBase):
    """A request body that fails the request if anything reads it before the answer."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise AssertionError("the body was read")


@pytest.mark.parametrize("token", ["", "x", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"])
def test_a_bad_callback_token_is_refused_before_the_body_is_read(clients, waiting_call, token):
    """Issue 16, item 2: four parallel 15 MB bodies with a wrong token once grew the server by
    2.9 GB (read and parsed, then 422). The token is checked first: no byte is read."""
    before = footprint()
    response = clients["ingest"].post(
        f"/api/v1/ai/callback?token={token}",
        content_type="application/json",
        environ_overrides={"wsgi.input": _BodyNeverRead(), "CONTENT_LENGTH": "15000000"},
    )
    refused_cleanly(response, 401, before=before)


def test_a_callback_result_is_parsed_once_and_limited_in_size(clients, waiting_call, monkeypatch):
    from call_downloader.ai.client import MAX_RESULT_BYTES

    _, token = waiting_call
    url = f"/api/v1/ai/callback?token={token}"
    too_large = b'{"transcript": "' + b"a" * MAX_RESULT_BYTES + b'"}'
    response = clients["ingest"].post(url, data=too_large, content_type="application/json")
    assert_clear_refusal(response, 413)
    assert MAX_RESULT_BYTES < 20 * 1024 * 1024  # fit for a result, not any JSON

    body = json.dumps({"transcript": "hello"}).encode()
    parses = []
    real_loads = json.loads

    def counting_loads(raw, *args, **kwargs):
        if raw == body:
            parses.append(raw)
        return real_loads(raw, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    response = clients["ingest"].post(url, data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()
    assert len(parses) == 1
def _call_source_lies() -> dict[str, bytes]:
    """Cut, lying and junk-behind-the-magic recordings of the formats call sources hand out
    (WebM/Matroska, WMA, AMR, AMR in 3GP)."""
    from call_downloader.audio import asf

    webm = make_fixture("webm_opus").read_bytes()
    duration_at = webm.index(b"\x44\x89\x88") + 3  # Info/Duration, an 8-byte float (ms)
    webm_long = bytearray(webm)
    real_ms = struct.unpack_from(">d", webm, duration_at)[0]
    struct.pack_into(">d", webm_long, duration_at, real_ms * 3)
    segment_at = webm.index(b"\x18\x53\x80\x67") + 4
    webm_segment = bytearray(webm)
    webm_segment[segment_at : segment_at + 8] = b"\x01\x00\x00\x00\x00\x10\x00\x00"
    wma = make_fixture("wma_v2").read_bytes()
    properties = wma.index(asf.FILE_PROPERTIES) + 24
    wma_long, wma_packets = bytearray(wma), bytearray(wma)
    struct.pack_into("<Q", wma_long, properties + 40,
                     struct.unpack_from("<Q", wma, properties + 40)[0] * 3)
    struct.pack_into("<Q", wma_packets, properties + 32,
                     struct.unpack_from("<Q", wma, properties + 32)[0] + 7)
    return {
        "webm cut": truncated_copy("webm_opus", 0.503).read_bytes(),
        "browser webm cut inside a block": truncated_copy("webm_opus_browser", 0.901).read_bytes(),
        "webm duration claims three times the blocks": bytes(webm_long),
        "webm segment claims more than the file": bytes(webm_segment),
        "mka vorbis cut": truncated_copy("mka_vorbis_8k", 0.503).read_bytes(),
        "ebml webm header then zeros": webm[:40] + b"\x00" * 6000,
        "wma cut": truncated_copy("wma_v2", 0.503).read_bytes(),
        "wma header claims three times the packets": bytes(wma_long),
        "wma packet count lies": bytes(wma_packets),
        "asf header guid then junk": wma[:30] + b"junk" * 2000,
        "amr cut inside a frame": truncated_copy("amr_nb", 0.503).read_bytes(),
        "amr magic only": b"#!AMR\n",
        "amr magic then html": b"#!AMR\n<html><body>" + b"x" * 5000,
        "amr-wb cut": truncated_copy("amr_wb", 0.901).read_bytes(),
        "amr-nb frames under the amr-wb magic": b"#!AMR-WB\n" + make_fixture(
            "amr_nb").read_bytes()[6:],
        "3gp amr cut": truncated_copy("3gp_amr_nb", 0.503).read_bytes(),
    }


def test_cut_and_lying_call_source_formats_never_pass_as_audio(clients, people):
    for case, data in _call_source_lies().items():
        before = footprint()
        response = upload(clients["ingest"], people["source"], data, "call.bin")
        if response.status_code == 202:
            result = run_analyze(response.get_json()["id"])
            assert result["status"] == "failed", (case, result)
            assert result["reason"] == "invalid_audio" and result["detail"], (case, result)
        else:
            refused_cleanly(response, 415, 422, before=before)


@pytest.mark.parametrize("kind", ["webm_opus_browser", "wma_v1_8k", "amr_wb", "3gp_amr_nb"])
def test_the_intact_recordings_are_measured(clients, people, kind):
    # The control for the test above: the same formats, uncut, are measured as decoded.
    from audio_fixtures import ffmpeg_duration

    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call

    path = make_fixture(kind)
    response = upload(clients["ingest"], people["source"], path.read_bytes(), "call.bin")
    assert response.status_code == 202, response.get_json()
    assert run_analyze(response.get_json()["id"])["status"] == "analyzed"
    with unit_of_work() as session:
        call = session.get(Call, uuid.UUID(response.get_json()["id"]))
        assert abs(call.duration_seconds - ffmpeg_duration(path)) <= 0.002
