"""The AI client against a fake AI service on 127.0.0.1: one attempt, classified."""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc

import pytest
from aifixtures import FakeAi
from werkzeug.wrappers import Request, Response

from call_downloader.ai.client import AiClient

META = {"call_id": "c-1", "external_id": "ext-9", "duration_seconds": 12.5, "format": "mp3"}


def analyze(client: AiClient, audio_file: tuple[str, bytes], callback: str | None = None):
    return client.analyze(audio_file[0], "call.mp3", "audio/mpeg", META, callback)


def test_sync_result_and_exact_upload(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response(
            json.dumps({"transcript": "hello", "score": 7}), mimetype="application/json"
        )

    outcome = analyze(AiClient(fake_ai.url(), timeout=10), audio_file)
    assert outcome.kind == "result"
    assert outcome.result == {"transcript": "hello", "score": 7}
    assert outcome.status_code == 200 and outcome.reason is None
    seen = fake_ai.seen[0]
    assert seen["file"] == audio_file[1]  # exactly the bytes, byte for byte
    assert seen["filename"] == "call.mp3" and seen["file_type"] == "audio/mpeg"
    assert json.loads(seen["form"]["metadata"]) == META
    assert "X-Callback-Url" not in seen["headers"]
    assert "Authorization" not in seen["headers"]


def test_async_accepted_with_callback_header(
    fake_ai: FakeAi, audio_file: tuple[str, bytes]
) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response(status=202)

    callback = "http://127.0.0.1:8080/api/v1/ai/callback/tok.en"
    outcome = analyze(AiClient(fake_ai.url(), timeout=10), audio_file, callback)
    assert (outcome.kind, outcome.status_code) == ("accepted", 202)
    assert fake_ai.seen[0]["headers"]["X-Callback-Url"] == callback


@pytest.mark.parametrize("base", ["", "/", "/v1", "/v1/audio/transcriptions"])
def test_openai_mode(fake_ai: FakeAi, audio_file: tuple[str, bytes], base: str) -> None:
    @fake_ai.route("/v1/audio/transcriptions")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response(json.dumps({"text": "hello there"}), mimetype="application/json")

    client = AiClient(fake_ai.url(base), protocol="openai", model="whisper-x", api_key="sk-1")
    outcome = analyze(client, audio_file, callback="http://ignored.example/cb")
    assert (outcome.kind, outcome.result) == ("result", {"text": "hello there"})
    seen = fake_ai.seen[0]
    assert seen["form"] == {"model": "whisper-x", "response_format": "json"}
    assert seen["file"] == audio_file[1]
    assert seen["headers"]["Authorization"] == "Bearer sk-1"
    assert "X-Callback-Url" not in seen["headers"]


def test_openai_mode_without_key_sends_no_authorization(
    fake_ai: FakeAi, audio_file: tuple[str, bytes]
) -> None:
    @fake_ai.route("/v1/audio/transcriptions")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response('{"text": ""}', mimetype="application/json")

    outcome = analyze(AiClient(fake_ai.url(""), protocol="OpenAI"), audio_file)
    assert outcome.kind == "result"
    assert "Authorization" not in fake_ai.seen[0]["headers"]


def test_429_is_transient_with_retry_after(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response('{"error": "rate limited"}', status=429, headers={"Retry-After": "7"})

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert (outcome.kind, outcome.status_code, outcome.retry_after) == ("transient", 429, 7.0)
    assert "rate limited" in (outcome.reason or "")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(
    fake_ai: FakeAi, audio_file: tuple[str, bytes], status: int
) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response("overloaded", status=status)

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert (outcome.kind, outcome.status_code) == ("transient", status)
    assert f"HTTP {status}" in (outcome.reason or "")


@pytest.mark.parametrize(
    ("body", "mimetype", "what"),
    [
        ("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "text/html", "HTML"),
        ('{"ok": true}', "text/html", "HTML"),
        ("[1, 2, 3]", "application/json", "no JSON object"),
        ('"just a string"', "application/json", "no JSON object"),
        ("{not json", "application/json", "no JSON object"),
        ("", "application/json", "no JSON object"),
        ("\xff\xfe", "application/octet-stream", "no JSON object"),
    ],
)
def test_200_without_a_json_object_is_transient(
    fake_ai: FakeAi, audio_file: tuple[str, bytes], body: str, mimetype: str, what: str
) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response(body, mimetype=mimetype)

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert (outcome.kind, outcome.status_code) == ("transient", 200)
    assert what in (outcome.reason or "")
    assert outcome.result is None


@pytest.mark.parametrize("declared", [True, False])
def test_huge_answer_is_transient_and_read_bounded(
    fake_ai: FakeAi, audio_file: tuple[str, bytes], declared: bool
) -> None:
    sent = {"bytes": 0}

    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        def body():
            yield b'{"text": "'
            for _ in range(2000):  # 128 MB unless the client hangs up
                sent["bytes"] += 65536
                yield b"a" * 65536

        headers = {"Content-Length": str(2000 * 65536 + 10)} if declared else {}
        return Response(body(), mimetype="application/json", headers=headers)

    outcome = analyze(AiClient(fake_ai.url(), max_response_bytes=1_000_000), audio_file)
    assert outcome.kind == "transient" and "larger" in (outcome.reason or "")
    assert sent["bytes"] < 2000 * 65536


@pytest.mark.parametrize(
    ("status", "body", "mimetype", "reason"),
    [
        (
            400,
            '{"error": {"message": "unsupported codec: g729"}}',
            "application/json",
            "unsupported codec: g729",
        ),
        (400, '{"error": "file too short"}', "application/json", "file too short"),
        (
            422,
            '{"detail": [{"loc": ["file"], "msg": "field required"}]}',
            "application/json",
            "field required",
        ),
        (413, '{"message": "audio exceeds 25 MB"}', "application/json", "audio exceeds 25 MB"),
        (401, "invalid api key", "text/plain", "invalid api key"),
        (403, "<html><body>Forbidden</body></html>", "text/html", "(HTML error page)"),
        (404, "", "text/plain", "HTTP 404"),
    ],
)
def test_other_4xx_is_permanent_with_the_ai_reason(
    fake_ai: FakeAi,
    audio_file: tuple[str, bytes],
    status: int,
    body: str,
    mimetype: str,
    reason: str,
) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response(body, status=status, mimetype=mimetype)

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert (outcome.kind, outcome.status_code) == ("permanent", status)
    assert reason in (outcome.reason or "")
    assert f"HTTP {status}" in (outcome.reason or "")


def test_long_reason_is_cut(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response("x" * 10000, status=400)

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert outcome.kind == "permanent" and len(outcome.reason or "") < 600


def test_redirect_is_not_followed(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        return Response(status=307, headers={"Location": fake_ai.url("/elsewhere")})

    @fake_ai.route("/elsewhere")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response("{}", mimetype="application/json")

    outcome = analyze(AiClient(fake_ai.url()), audio_file)
    assert (outcome.kind, outcome.status_code) == ("permanent", 307)
    assert "redirect" in (outcome.reason or "")
    assert fake_ai.seen == []


def test_connection_refused_is_transient(audio_file: tuple[str, bytes]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    outcome = analyze(AiClient(f"http://127.0.0.1:{port}/analyze"), audio_file)
    assert outcome.kind == "transient" and outcome.status_code is None
    assert "unreachable" in (outcome.reason or "")


def test_no_answer_is_a_transient_timeout(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        request.get_data()
        fake_ai.stop.wait(20)
        return Response("{}")

    outcome = analyze(AiClient(fake_ai.url(), timeout=0.5), audio_file)
    assert outcome.kind == "transient" and "did not answer" in (outcome.reason or "")


def test_trickled_answer_hits_the_overall_timeout(
    fake_ai: FakeAi, audio_file: tuple[str, bytes]
) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        def body():
            yield b'{"text": "'
            for _ in range(100000):
                if fake_ai.stop.is_set():
                    return
                time.sleep(0.02)
                yield b"a"

        return Response(body(), mimetype="application/json")

    outcome = analyze(AiClient(fake_ai.url(), timeout=1.0), audio_file)
    assert (outcome.kind, outcome.status_code) == ("transient", 200)
    assert "did not answer" in (outcome.reason or "")


def _counting_server() -> tuple[int, dict, threading.Thread]:
    """A bare socket server that counts the request body into one reused buffer: it allocates
    (almost) nothing itself, so tracemalloc's peak is the client's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    seen: dict = {"body_bytes": 0}

    def serve() -> None:
        conn, _ = listener.accept()
        listener.close()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            headers = dict(
                line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if line
            )
            remaining = int(headers["Content-Length"])
            buffer = bytearray(65536)
            while remaining:
                n = conn.recv_into(buffer, min(len(buffer), remaining))
                if not n:
                    break
                remaining -= n
                seen["body_bytes"] += n
            body = b'{"ok": 1}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], seen, thread


def test_upload_is_streamed_from_disk(tmp_path) -> None:
    size = 16 * 1024 * 1024
    path = tmp_path / "big.wav"
    block = bytes(range(256)) * 256
    with open(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    port, seen, thread = _counting_server()

    tracemalloc.start()
    try:
        outcome = AiClient(f"http://127.0.0.1:{port}/analyze", timeout=60).analyze(
            str(path), "big.wav", "audio/wav", META, None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    thread.join(timeout=10)
    assert outcome.kind == "result" and outcome.result == {"ok": 1}
    assert seen["body_bytes"] > size  # the whole file went up (plus multipart framing)
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte upload"


def test_missing_audio_file_is_a_local_error(fake_ai: FakeAi, tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        AiClient(fake_ai.url()).analyze(str(tmp_path / "gone.mp3"), "x.mp3", "audio/mpeg", {}, None)


def test_unsafe_filename_is_sanitised(fake_ai: FakeAi, audio_file: tuple[str, bytes]) -> None:
    @fake_ai.route("/analyze")
    def _(request: Request) -> Response:
        fake_ai.record(request)
        return Response("{}", mimetype="application/json")

    AiClient(fake_ai.url()).analyze(audio_file[0], '../../a"\r\nb.mp3', "", {}, None)
    assert fake_ai.seen[0]["filename"] == 'a" b.mp3'
    assert fake_ai.seen[0]["file_type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": ""},
        {"url": "ftp://ai.example/x"},
        {"url": "not a url"},
        {"url": "http://ai.example", "protocol": "grpc"},
        {"url": "http://ai.example", "timeout": 0},
    ],
)
def test_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AiClient(**kwargs)
