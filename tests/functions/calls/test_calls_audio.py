"""GET /api/v1/calls/<id>/audio: Range (206, Content-Range, 416), content types, links."""

from __future__ import annotations

import os
import uuid

import pytest
from calls_helpers import BASE, make_call, set_active

from call_downloader.storage.audio import CHUNK_BYTES

AUDIO = os.urandom(CHUNK_BYTES * 2 + 12345)  # three chunks, the last one short


@pytest.fixture
def big_call(people):
    return make_call(people["src"], audio=AUDIO, fmt="mp3", external_id="big")


def test_whole_recording(client, people, big_call):
    r = client.get(f"{BASE}/calls/{big_call}/audio", headers=people["viewer"].headers)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "audio/mpeg"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert int(r.headers["Content-Length"]) == len(AUDIO)
    assert r.data == AUDIO
    assert "big.mp3" in r.headers["Content-Disposition"]


@pytest.mark.parametrize(
    "header,start,end",
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(AUDIO) - 1),
        ("bytes=-500", len(AUDIO) - 500, len(AUDIO) - 1),
        # across the first chunk boundary, and across two
        (f"bytes={CHUNK_BYTES - 10}-{CHUNK_BYTES + 9}", CHUNK_BYTES - 10, CHUNK_BYTES + 9),
        (f"bytes=5-{2 * CHUNK_BYTES + 5}", 5, 2 * CHUNK_BYTES + 5),
        (f"bytes={2 * CHUNK_BYTES}-{2 * CHUNK_BYTES}", 2 * CHUNK_BYTES, 2 * CHUNK_BYTES),
        ("bytes=10-999999999", 10, len(AUDIO) - 1),  # a last position past the end is clamped
        ("bytes=-999999999", 0, len(AUDIO) - 1),  # a suffix longer than the file: all of it
    ],
)
def test_ranges(client, people, big_call, header, start, end):
    r = client.get(
        f"{BASE}/calls/{big_call}/audio", headers={**people["viewer"].headers, "Range": header}
    )
    assert r.status_code == 206, header
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(AUDIO)}"
    assert int(r.headers["Content-Length"]) == end - start + 1
    assert r.data == AUDIO[start : end + 1]


def test_unsatisfiable_range_is_416(client, people, big_call):
    r = client.get(
        f"{BASE}/calls/{big_call}/audio",
        headers={**people["viewer"].headers, "Range": f"bytes={len(AUDIO)}-"},
    )
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(AUDIO)}"
    assert r.get_json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize(
    "header", ["bytes=abc", "items=0-5", "bytes=0-1,5-9", "bytes=9-2", "x" * 300]
)
def test_odd_range_headers_get_the_whole_file(client, people, big_call, header):
    r = client.get(
        f"{BASE}/calls/{big_call}/audio", headers={**people["viewer"].headers, "Range": header}
    )
    assert r.status_code == 200 and len(r.data) == len(AUDIO)


def test_if_range(client, people, big_call):
    h = people["viewer"].headers
    etag = client.head(f"{BASE}/calls/{big_call}/audio", headers=h).headers["ETag"]
    same = client.get(
        f"{BASE}/calls/{big_call}/audio", headers={**h, "Range": "bytes=0-9", "If-Range": etag}
    )
    assert same.status_code == 206 and same.data == AUDIO[:10]
    other = client.get(
        f"{BASE}/calls/{big_call}/audio", headers={**h, "Range": "bytes=0-9", "If-Range": '"stale"'}
    )
    assert other.status_code == 200 and len(other.data) == len(AUDIO)


def test_head_has_headers_and_no_body(client, people, big_call):
    r = client.head(f"{BASE}/calls/{big_call}/audio", headers=people["viewer"].headers)
    assert r.status_code == 200 and r.data == b""
    assert int(r.headers["Content-Length"]) == len(AUDIO)


@pytest.mark.parametrize(
    "fmt,ctype",
    [
        ("wav", "audio/wav"),
        ("ogg", "audio/ogg"),
        ("opus", "audio/ogg; codecs=opus"),
        ("flac", "audio/flac"),
        ("m4a", "audio/mp4"),
        ("aac", "audio/aac"),
        ("webm", "audio/webm"),
        ("mka", "audio/x-matroska"),
        ("wma", "audio/x-ms-wma"),
        ("amr", "audio/amr"),
        ("awb", "audio/amr-wb"),
    ],
)
def test_content_types(client, people, fmt, ctype):
    cid = make_call(people["src"], fmt=fmt, audio=b"0123456789")
    r = client.get(f"{BASE}/calls/{cid}/audio", headers=people["viewer"].headers)
    assert r.headers["Content-Type"] == ctype
    r = client.get(f"{BASE}/calls/{cid}/audio?download=1", headers=people["viewer"].headers)
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert f'.{fmt}"' in r.headers["Content-Disposition"]


def test_every_format_has_a_media_type():
    from call_downloader.audio import FORMATS
    from call_downloader.audio.media import MEDIA_TYPES

    assert set(FORMATS) <= set(MEDIA_TYPES)


def test_roles_and_visibility(client, people, big_call):
    other = make_call(people["src2"], audio=b"abc")
    assert client.get(f"{BASE}/calls/{big_call}/audio").status_code == 401
    assert (
        client.get(f"{BASE}/calls/{big_call}/audio", headers=people["src"].headers).status_code
        == 200
    )
    assert (
        client.get(f"{BASE}/calls/{other}/audio", headers=people["src"].headers).status_code == 404
    )
    assert (
        client.get(
            f"{BASE}/calls/{uuid.uuid4()}/audio", headers=people["admin"].headers
        ).status_code
        == 404
    )
    r = client.get(f"{BASE}/calls/{big_call}/audio?foo=1", headers=people["admin"].headers)
    assert r.status_code == 400


def test_audio_link_plays_without_a_header(client, people, big_call):
    link = client.get(f"{BASE}/calls/{big_call}/audio-link", headers=people["viewer"].headers)
    assert link.status_code == 200 and link.headers["Cache-Control"] == "no-store"
    url = link.get_json()["url"]
    r = client.get(url, headers={"Range": "bytes=0-15"})
    assert r.status_code == 206 and r.data == AUDIO[:16]
    # the token is bound to its call
    other = make_call(people["src"], audio=b"other")
    token = url.split("access=", 1)[1]
    assert client.get(f"{BASE}/calls/{other}/audio?access={token}").status_code == 401
    # a tampered token is refused
    assert client.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB")).status_code == 401
    # the user is checked each time: a deactivated user's links stop working
    set_active(people["viewer"], False)
    assert client.get(url).status_code == 401


def test_a_source_cannot_get_a_link_for_anothers_call(client, people):
    other = make_call(people["src2"], audio=b"abc")
    assert (
        client.get(f"{BASE}/calls/{other}/audio-link", headers=people["src"].headers).status_code
        == 404
    )


def test_expired_link_is_refused(client, people, big_call, monkeypatch):
    from itsdangerous import TimestampSigner

    from call_downloader.api import audio_stream

    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(
        TimestampSigner,
        "get_timestamp",
        lambda self: real(self) - audio_stream.AUDIO_LINK_SECONDS - 60,
    )
    url = client.get(
        f"{BASE}/calls/{big_call}/audio-link", headers=people["viewer"].headers
    ).get_json()["url"]
    monkeypatch.setattr(TimestampSigner, "get_timestamp", real)
    r = client.get(url)
    assert r.status_code == 401 and "expired" in r.get_json()["error"]["message"]


def auth_client():
    import functions_framework

    from call_downloader.events.dispatcher import repo_root

    source = repo_root() / "functions" / "auth" / "main.py"
    return functions_framework.create_app("auth", str(source)).test_client()


def test_a_link_dies_with_its_session_on_logout(client, people, big_call):
    """Issue 16, item 9: a link asked in a login session stops working when it ends."""
    url = client.get(
        f"{BASE}/calls/{big_call}/audio-link", headers=people["viewer"].headers
    ).get_json()["url"]
    assert client.get(url).status_code == 200
    logout = auth_client().post("/api/v1/auth/logout", headers=people["viewer"].headers)
    assert logout.status_code == 204
    assert client.get(url).status_code == 401


def test_a_link_dies_when_the_password_changes(client, people, big_call):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User
    from call_downloader.security import users
    from call_downloader.security.passwords import hash_password

    with unit_of_work() as session:
        session.get(User, people["oper"].id).password_hash = hash_password("old-password-1")
    url = client.get(
        f"{BASE}/calls/{big_call}/audio-link", headers=people["oper"].headers
    ).get_json()["url"]
    assert client.get(url).status_code == 200
    with unit_of_work() as session:  # what POST /auth/me/password does
        users.change_own_password(session, people["oper"].id, "old-password-1", "new-password-1")
    assert client.get(url).status_code == 401
