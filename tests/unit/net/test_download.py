"""The downloader against real servers on 127.0.0.1 (allowlisted where a test needs it)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from netfixtures import ScriptedServer, TlsMaterial, fake_resolver, send

from call_downloader.net.download import DownloadError, DownloadTooLarge, open_download
from call_downloader.net.ssrf import ForbiddenTarget, Policy

LOCAL = Policy.public_only(["127.0.0.1:*"])  # the servers listen on any free port


def fetch(
    url: str, *, policy: Policy = LOCAL, max_bytes: int = 10_000_000, timeout: float = 10, **kw
) -> tuple[bytes, object]:
    with open_download(url, policy=policy, max_bytes=max_bytes, timeout=timeout, **kw) as d:
        data = b"".join(d.iter_chunks())
    return data, d


def error_of(url: str, **kw) -> DownloadError:
    with pytest.raises(DownloadError) as info:
        fetch(url, **kw)
    return info.value


def hold(server: ScriptedServer, seconds: float = 20) -> None:
    """Keep a handler busy until the client gives up (or the test ends)."""
    server.stop.wait(seconds)


def test_streams_the_body_and_reports_headers(http_server: ScriptedServer) -> None:
    payload = os.urandom(300_000)

    @http_server.route("/rec/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, payload, {"Content-Type": "Audio/MPEG; charset=binary"})

    with open_download(
        http_server.url("/rec/a.mp3?token=1"),
        policy=LOCAL,
        max_bytes=1_000_000,
        timeout=10,
        chunk_size=65536,
    ) as download:
        assert download.content_type == "audio/mpeg"
        assert download.content_length == len(payload)
        assert download.filename == "a.mp3"
        chunks = list(download.iter_chunks())
        with pytest.raises(RuntimeError):
            download.iter_chunks()
    assert b"".join(chunks) == payload
    assert all(len(c) <= 65536 for c in chunks)
    assert download.bytes_read == len(payload)
    request = http_server.requests[0]
    assert request.method == "GET" and request.path == "/rec/a.mp3?token=1"
    assert request.headers["host"] == f"127.0.0.1:{http_server.port}"
    assert request.headers["accept-encoding"] == "identity"


def test_connects_to_the_checked_address_with_the_original_host_header(
    http_server: ScriptedServer,
) -> None:
    @http_server.route("/a.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"RIFF....")

    calls: list[str] = []
    resolver = fake_resolver({"pbx.corp": ["127.0.0.1"]}, calls)
    data, _ = fetch(
        http_server.url("/a.wav", host="pbx.corp"),
        policy=Policy.public_only(["pbx.corp:*"]),
        resolver=resolver,
    )
    assert data == b"RIFF...."
    assert calls == ["pbx.corp"]  # resolved once, by the guard; httpx never resolved it
    assert http_server.requests[0].headers["host"] == f"pbx.corp:{http_server.port}"


def test_falls_back_to_the_next_checked_address_when_connecting_fails(
    http_server: ScriptedServer,
) -> None:
    @http_server.route("/a.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"data")

    # Nothing listens on 127.0.0.2 at this port: refused, then 127.0.0.1 answers.
    resolver = fake_resolver({"pbx.corp": ["127.0.0.2", "127.0.0.1"]})
    data, _ = fetch(
        http_server.url("/a.wav", host="pbx.corp"),
        policy=Policy.public_only(["127.0.0.0/8:*"]),
        resolver=resolver,
    )
    assert data == b"data"


def test_loopback_is_refused_without_the_allowlist(http_server: ScriptedServer) -> None:
    @http_server.route("/a.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"secret")

    err = error_of(http_server.url("/a.wav"), policy=Policy.public_only())
    assert err.code == "audio_url_forbidden"
    assert isinstance(err.__cause__, ForbiddenTarget)
    err = error_of(
        http_server.url("/a.wav", host="sneaky.test"),
        policy=Policy.public_only(),
        resolver=fake_resolver({"sneaky.test": ["127.0.0.1"]}),
    )
    assert err.code == "audio_url_forbidden"
    assert http_server.requests == []  # never connected


def test_unresolvable_host(http_server: ScriptedServer) -> None:
    err = error_of("http://nowhere.test/a.mp3", resolver=fake_resolver({}))
    assert err.code == "download_failed"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_refused_not_followed(http_server: ScriptedServer, status: int) -> None:
    @http_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, status, b"", {"Location": http_server.url("/internal-only")})

    @http_server.route("/internal-only")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"should never be fetched")

    err = error_of(http_server.url("/a.mp3"))
    assert err.code == "redirect_refused"
    assert "internal-only" not in err.message and "127.0.0.1" not in err.message
    assert http_server.paths() == ["/a.mp3"]


def test_redirect_to_metadata_names_nothing_internal(http_server: ScriptedServer) -> None:
    @http_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})

    err = error_of(http_server.url("/a.mp3"))
    assert err.code == "redirect_refused"
    assert "169.254" not in err.message and "meta" not in err.message


@pytest.mark.parametrize("status", [204, 404, 500])
def test_non_2xx_is_an_error(http_server: ScriptedServer, status: int) -> None:
    @http_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, status, b"" if status == 204 else b"nope")

    if status == 204:
        data, _ = fetch(http_server.url("/a.mp3"))
        assert data == b""  # an empty 2xx body is for ingest to judge (not audio)
        return
    err = error_of(http_server.url("/a.mp3"))
    assert err.code == "download_failed" and str(status) in err.message


def test_declared_length_over_the_limit_is_refused_before_reading(
    http_server: ScriptedServer,
) -> None:
    @http_server.route("/big.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10000000")
        h.end_headers()
        h.wfile.write(b"x" * 1000)
        h.wfile.flush()
        hold(http_server)  # reading on would block until the deadline

    with pytest.raises(DownloadTooLarge) as info:
        fetch(http_server.url("/big.wav"), max_bytes=5000, timeout=30)
    assert info.value.code == "too_large"
    assert info.value.max_bytes == 5000


def test_undeclared_length_stops_at_the_limit(http_server: ScriptedServer) -> None:
    written = {"bytes": 0}

    @http_server.route("/endless.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = b"y" * 65536
        for _ in range(4000):  # 250 MiB unless the client hangs up first
            h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            written["bytes"] += len(block)
        h.wfile.write(b"0\r\n\r\n")

    received = 0
    with pytest.raises(DownloadTooLarge):
        with open_download(
            http_server.url("/endless.wav"),
            policy=LOCAL,
            max_bytes=1_000_000,
            timeout=30,
            chunk_size=65536,
        ) as download:
            assert download.content_length is None
            for chunk in download.iter_chunks():
                received += len(chunk)
    assert received <= 1_000_000
    assert written["bytes"] < 4000 * 65536  # the server was cut off, not drained


def test_slow_trickle_is_stopped_by_the_overall_deadline(http_server: ScriptedServer) -> None:
    @http_server.route("/trickle.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        # A byte every 20 ms: no single read ever waits long, only the total is too slow.
        for _ in range(100000):
            if http_server.stop.is_set():
                return
            h.wfile.write(b"z")
            h.wfile.flush()
            time.sleep(0.02)

    err = error_of(http_server.url("/trickle.mp3"), timeout=1.0)
    assert err.code == "download_timeout"


def test_headers_that_never_come_hit_the_deadline(http_server: ScriptedServer) -> None:
    @http_server.route("/stall.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        hold(http_server)

    err = error_of(http_server.url("/stall.mp3"), timeout=0.5)
    assert err.code == "download_timeout"


def test_trickled_headers_hit_the_deadline(http_server: ScriptedServer) -> None:
    @http_server.route("/slow-headers.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100000):
            if http_server.stop.is_set():
                return
            h.wfile.write(b"X")
            h.wfile.flush()
            time.sleep(0.02)

    err = error_of(http_server.url("/slow-headers.mp3"), timeout=1.0)
    assert err.code == "download_timeout"


def test_truncated_body_is_an_error(http_server: ScriptedServer) -> None:
    @http_server.route("/short.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"a" * 500)
        h.wfile.flush()
        h.close_connection = True

    err = error_of(http_server.url("/short.mp3"))
    assert err.code == "download_failed"


def test_encoded_bodies_are_refused(http_server: ScriptedServer) -> None:
    @http_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"\x1f\x8b...", {"Content-Encoding": "gzip"})

    err = error_of(http_server.url("/a.mp3"))
    assert err.code == "download_failed" and "gzip" in err.message


def test_connection_refused(closed_port: int) -> None:
    err = error_of(f"http://127.0.0.1:{closed_port}/a.mp3")
    assert err.code == "download_failed"
    assert "127.0.0.1" not in err.message


@pytest.mark.parametrize(
    ("disposition", "path", "expected"),
    [
        ('attachment; filename="call-42.wav"', "/x", "call-42.wav"),
        ('attachment; filename="../../etc/passwd"', "/x", "passwd"),
        ('attachment; filename="..\\\\..\\\\boot.ini"', "/x", "boot.ini"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.mp3", "/x", "€ rates.mp3"),
        ('attachment; filename="a\tb.mp3"', "/x", "a b.mp3"),
        ('attachment; filename=".."', "/rec/fallback.ogg", "fallback.ogg"),
        (None, "/rec/call%201.wav", "call 1.wav"),
        (None, "/rec/%2e%2e%2fsecret.wav", "secret.wav"),
        (None, "/rec/%0d%0abad.wav", "bad.wav"),
        (None, "/", None),
    ],
)
def test_filename_is_sanitised(
    http_server: ScriptedServer, disposition: str | None, path: str, expected: str | None
) -> None:
    route_path = path.split("?")[0]

    @http_server.route(route_path)
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"abc", {"Content-Disposition": disposition} if disposition else {})

    # The server matches the raw path, which the client sends percent-encoded as given.
    _, download = fetch(http_server.url(path))
    assert download.filename == expected


def test_memory_stays_bounded_while_streaming(http_server: ScriptedServer) -> None:
    size = 16 * 1024 * 1024
    block = os.urandom(65536)

    @http_server.route("/large.wav")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(size))
        h.end_headers()
        for _ in range(size // len(block)):
            h.wfile.write(block)

    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with open_download(
            http_server.url("/large.wav"),
            policy=LOCAL,
            max_bytes=size,
            timeout=60,
            chunk_size=65536,
        ) as download:
            for chunk in download.iter_chunks():
                digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte body"


def test_https_verifies_the_original_name_on_the_pinned_address(
    https_server: ScriptedServer, tls_material: TlsMaterial
) -> None:
    @https_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"tls bytes")

    resolver = fake_resolver(
        {tls_material.server_name: ["127.0.0.1"], "wrong.example.test": ["127.0.0.1"]}
    )
    with httpx.Client(verify=tls_material.client_context(), trust_env=False) as client:
        data, _ = fetch(
            https_server.url("/a.mp3", host=tls_material.server_name),
            resolver=resolver,
            client=client,
        )
        assert data == b"tls bytes"
        assert https_server.requests[0].headers["host"] == (
            f"{tls_material.server_name}:{https_server.port}"
        )
        # The certificate is for audio.example.test only: another name on the same address fails.
        err = error_of(
            https_server.url("/a.mp3", host="wrong.example.test"), resolver=resolver, client=client
        )
        assert err.code == "download_failed" and "certificate" in err.message
        # And so does the bare address (the IP is not in the certificate).
        err = error_of(https_server.url("/a.mp3"), client=client)
        assert err.code == "download_failed"
    assert len(https_server.requests) == 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        fetch("http://127.0.0.1/", max_bytes=0)
    with pytest.raises(ValueError):
        fetch("http://127.0.0.1/", timeout=0)


def test_deadline_watchdog_does_not_outlive_the_download(http_server: ScriptedServer) -> None:
    @http_server.route("/a.mp3")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"ok")

    before = threading.active_count()
    for _ in range(5):
        fetch(http_server.url("/a.mp3"), timeout=30)
    # Watchdog timers are cancelled when the download ends (no thread per past download).
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before
