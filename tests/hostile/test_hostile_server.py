"""Hostile input where streaming matters, against the real `call-downloader run` server over
raw sockets: a Content-Length that lies, chunked bodies over the limit or cut inside the file,
a body that never ends, oversized headers. Nothing may be stored, and the server keeps serving.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from audio_fixtures import make_fixture
from hostile_helpers import FOOTPRINT_TABLES, exchange, status_of

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 200_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path, database_url, db):
    port = _free_port()
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        DATABASE_URL=database_url,
        EVENT_NAMESPACE=f"cdhostile_{uuid.uuid4().hex[:8]}",
        MAX_UPLOAD_BYTES=str(LIMIT),
        DATA_DIR=str(tmp_path / "data"),
        AI_URL="http://127.0.0.1:9/analyze",  # never reached: nothing here is accepted
        DELIVERY_URL="http://127.0.0.1:9/hook",
    )
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/call-downloader"), "run"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        token = httpx.post(
            f"{url}/api/v1/auth/token",
            data={"username": env["ADMIN_USERNAME"], "password": env["ADMIN_PASSWORD"]},
            timeout=30,
        ).json()["access_token"]
        yield port, token
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        from call_downloader.events.broker import Topology, connect

        conn = connect()
        try:
            Topology(env["EVENT_NAMESPACE"]).delete(conn.channel())
        finally:
            conn.close()


def counts() -> dict[str, int]:
    from sqlalchemy import text

    from call_downloader.db.engine import get_engine

    with get_engine().connect() as conn:
        return {
            t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0)
            for t in FOOTPRINT_TABLES
            if t not in ("users",)
        }


def multipart_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def chunked(parts: list[bytes]) -> list[bytes]:
    return [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts if p] + [b"0\r\n\r\n"]


def test_streaming_abuse_stores_nothing_and_the_server_keeps_serving(server):
    port, token = server
    wav = make_fixture("wav_pcm16_8k").read_bytes()
    boundary = "HostileBoundary"
    base = (
        f"POST /api/v1/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    )
    before = counts()
    results = {}

    # 3. Chunked (no Content-Length) past the limit.
    big = wav + b"\0" * LIMIT
    head = (base + "Transfer-Encoding: chunked\r\n\r\n").encode()
    end = f"\r\n--{boundary}--\r\n".encode()
    body = chunked(
        [multipart_head(boundary), *[big[i : i + 16384] for i in range(0, len(big), 16384)], end]
    )
    results["chunked over the limit"] = exchange(port, head, body, close_write=True)
    # 4. Chunked and complete as HTTP, but the multipart ends inside the file.
    body = chunked([multipart_head(boundary), wav[: len(wav) // 2]])
    results["chunked, cut inside the file"] = exchange(port, head, body, close_write=True)
    # 5. A header far too large.
    head = (base + "X-Pad: " + "a" * 200_000 + "\r\nContent-Length: 10\r\n\r\n").encode()
    results["huge header"] = exchange(port, head, [b"0123456789"], close_write=True)
    statuses = {name: status_of(answer) for name, answer in results.items()}
    for name, status in statuses.items():
        # No answer at all is acceptable only when the client itself gave up mid-body.
        if status is None:
            assert name == "lying length, client gives up", (name, results[name][:200])
            continue
        assert 400 <= status < 500, (name, status, results[name][:300])
    assert (
        statuses["chunked over the limit"] in (413, None)
        or statuses["chunked over the limit"] == 413
    )
    assert statuses["chunked, cut inside the file"] == 400
    assert counts() == before, statuses
    # And the server still takes a good recording.
    good = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/calls",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("a.wav", wav, "audio/wav")},
        timeout=30,
    )
    assert good.status_code == 202, good.text


def test_a_client_that_gives_up_mid_body_gets_a_4xx_and_stores_nothing(server):
    port, token = server
    wav = make_fixture("wav_pcm16_8k").read_bytes()
    boundary = "HostileBoundary"
    head = (
        f"POST /api/v1/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Content-Length: 5000000\r\n\r\n"
    ).encode()
    before = counts()
    answer = exchange(port, head, [multipart_head(boundary), wav[:4000]], close_write=True)
    assert counts() == before  # nothing stored either way
    status = status_of(answer)
    assert status is None or 400 <= status < 500, answer[:300]
    # Over the limit by its Content-Length: refused from the header (413), even if the
    # client then stops sending.
    over = head.replace(b"Content-Length: 5000000", f"Content-Length: {LIMIT * 10}".encode())
    answer = exchange(port, over, [b"x" * 1000], close_write=True)
    assert status_of(answer) == 413, answer[:300]
    assert counts() == before
