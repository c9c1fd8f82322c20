"""A rollback in the middle of a multi-chunk upload (issue 16, item 7): over the limit without
Content-Length (chunked), a fault found after the audio rows were written, the client gone.
Each answers its 4xx (or, for a client that left, nothing it could read), leaves no row
behind on the real PostgreSQL, and the ingest function keeps taking uploads.

The uploads are larger than one audio row (1 MiB), so the rows go through the chunk writer's
helper thread: the faults hit while it holds rows of the open transaction. The ingest function's
Flask app is served over a real socket (werkzeug's threaded server), as in a container.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from audio_fixtures import make_fixture
from hostile_helpers import ROOT, Person, exchange, footprint, make_person, status_of
from werkzeug.serving import make_server

LIMIT = 3 * 1024 * 1024
BOUNDARY = "LargeUploadBoundary"


@pytest.fixture
def ingest_url(db, monkeypatch) -> Iterator[str]:
    import functions_framework

    from call_downloader.config import reset_settings
    from call_downloader.storage.redis_client import reset_redis

    monkeypatch.setenv("MAX_UPLOAD_BYTES", str(LIMIT))
    reset_settings()
    reset_redis()
    app = functions_framework.create_app(
        target="ingest", source=str(ROOT / "functions" / "ingest" / "main.py")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def source(ingest_url) -> Person:
    return make_person("source")


def file_head() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def field(name: str, value: bytes) -> bytes:
    head = f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
    return head.encode() + value


def audio(size: int) -> bytes:
    wav = make_fixture("wav_pcm16_8k").read_bytes()
    return wav + b"\0" * (size - len(wav))


def pieces(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(url: str, person: Person, body: bytes) -> httpx.Response:
    """No Content-Length: httpx sends a generator with Transfer-Encoding: chunked."""
    return httpx.post(
        f"{url}/api/v1/calls",
        headers={**person.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        content=pieces(body),
        timeout=60,
    )


def settled() -> None:
    """Wait until the server has finished with the database (no other session of this
    database in a transaction): a request the client left may still be rolling back."""
    from sqlalchemy import text

    from call_downloader.db.engine import get_engine

    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction', "
        "'idle in transaction (aborted)')"
    )
    deadline = time.monotonic() + 60
    while True:
        with get_engine().connect() as conn:
            if conn.execute(query).scalar() == 0:
                return
        assert time.monotonic() < deadline, "the server still holds a transaction"
        time.sleep(0.1)


def no_writer_threads() -> bool:
    return not any(t.name == "audio-chunk-writer" for t in threading.enumerate())


def still_takes_uploads(url: str, person: Person) -> None:
    body = file_head() + audio(2 * 1024 * 1024) + f"\r\n--{BOUNDARY}--\r\n".encode()
    good = post_chunked(url, person, body)
    assert good.status_code == 202, good.text
    assert good.json()["size_bytes"] == 2 * 1024 * 1024


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def refused_as_too_large(url: str, person: Person, body: bytes) -> None:
    """`body`, sent chunked, answers 413 (or the server closes while the client still
    sends), stores nothing, and the function keeps taking uploads."""
    before = footprint()
    try:
        response = post_chunked(url, person, body)
    except httpx.HTTPError:
        response = None  # the server may close while the client still sends
    if response is not None:
        assert_refused(response, 413, "payload_too_large")
    settled()
    assert footprint() == before
    assert no_writer_threads()
    still_takes_uploads(url, person)


def test_chunked_upload_over_the_limit_answers_413_and_stores_nothing(ingest_url, source):
    body = file_head() + audio(LIMIT + 1024 * 1024) + f"\r\n--{BOUNDARY}--\r\n".encode()
    refused_as_too_large(ingest_url, source, body)


@pytest.mark.parametrize(
    ("tail", "status", "code"),
    [
        # The fields come after the file: they are judged once its rows are written.
        (field("metadata", b"{not json") + f"\r\n--{BOUNDARY}--\r\n".encode(), 422,
         "invalid_metadata"),
        (field("external_id", b"\x01bad") + f"\r\n--{BOUNDARY}--\r\n".encode(), 422,
         "invalid_field"),
        # The body ends without its closing boundary: known only at the very end.
        (b"", 400, "malformed_multipart"),
    ],
    ids=["bad metadata after the file", "bad external_id after the file", "no closing boundary"],
)  # fmt: skip
def test_a_fault_found_after_the_audio_rows_answers_4xx_and_stores_nothing(
    ingest_url, source, tail, status, code
):
    before = footprint()
    body = file_head() + audio(LIMIT - 64 * 1024) + tail
    assert_refused(post_chunked(ingest_url, source, body), status, code)
    settled()
    assert footprint() == before
    assert no_writer_threads()
    still_takes_uploads(ingest_url, source)


def test_a_client_gone_mid_upload_leaves_nothing(ingest_url, source):
    before = footprint()
    port = int(ingest_url.rsplit(":", 1)[1])
    head = (
        f"POST /api/v1/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {source.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {LIMIT}\r\n\r\n"
    ).encode()
    # Past two audio rows, then gone, a megabyte short of what the header announced.
    body = [file_head(), *pieces(audio(2 * 1024 * 1024 + 12345))]
    answer = exchange(port, head, body, close_write=True)
    status = status_of(answer)
    # Whatever it answered (if anything reached the client), it was no success and no 5xx.
    assert status is None or 400 <= status < 500, answer[:300]
    settled()
    assert footprint() == before
    assert no_writer_threads()
    still_takes_uploads(ingest_url, source)


def test_parts_ingest_skips_count_against_the_limit(ingest_url, source):
    """Issue 16, item 9: every byte of the body counts, not only the file's: a small file
    next to a part nobody reads, larger than the limit, is refused (it was stored)."""
    junk = field("padding", b"\0" * (LIMIT + 512 * 1024))
    body = file_head() + audio(64 * 1024) + junk + f"\r\n--{BOUNDARY}--\r\n".encode()
    refused_as_too_large(ingest_url, source, body)
