"""`audio_url` uploads (issue 16, item 9): the download happens between two transactions,
never inside one, so a slow source server holds no database connection; what is not audio is
refused from its first bytes, and nothing is stored on any refusal. The source server is a
real one on 127.0.0.1 (allowlisted with its port)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from audio_fixtures import make_fixture
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

CALLS = "/api/v1/calls"
IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
)


class AudioServer:
    """Serves a recording; while it answers, notes how many sessions of the test database
    sit in an open transaction (the ingest request waiting for this download)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.open_transactions: list[int] = []
        self.served = 0

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            from sqlalchemy import create_engine, text

            from call_downloader.config import get_settings

            engine = create_engine(get_settings().sqlalchemy_database_url)
            try:
                with engine.connect() as conn:
                    self.open_transactions.append(int(conn.execute(text(IN_TRANSACTION)).scalar()))
            finally:
                engine.dispose()
            self.served += 1
            return Response(self.body, content_type="audio/wav")(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/rec.wav"


@pytest.fixture
def audio_server(monkeypatch) -> Iterator[Any]:
    from call_downloader.config import reset_settings

    servers: list[AudioServer] = []

    def serve(body: bytes) -> AudioServer:
        server = AudioServer(body)
        servers.append(server)
        monkeypatch.setenv("AUDIO_URL_ALLOWLIST", f"127.0.0.1:{server.server.server_port}")
        reset_settings()
        return server

    yield serve
    for server in servers:
        server.server.shutdown()


def counts() -> dict[str, int]:
    from sqlalchemy import text

    from call_downloader.db.engine import get_engine

    with get_engine().connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() or 0)
            for t in ("calls", "audio_chunks", "timeline", "outbox")
        }


def test_the_download_holds_no_transaction_open(clients, source, audio_server):
    wav = make_fixture("wav_pcm16_8k").read_bytes()
    server = audio_server(wav)
    response = clients["ingest"].post(
        CALLS, headers=source.headers, json={"audio_url": server.url, "external_id": "u-1"}
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["size_bytes"] == len(wav)
    assert server.served == 1 and server.open_transactions == [0]
    stored = clients["calls"].get(f"{CALLS}/{response.get_json()['id']}", headers=source.headers)
    assert stored.get_json()["format"] == "wav"


def test_not_audio_is_refused_and_nothing_is_stored(clients, source, audio_server):
    server = audio_server(b"<!doctype html>" + b"x" * 200_000)
    before = counts()
    response = clients["ingest"].post(CALLS, headers=source.headers, json={"audio_url": server.url})
    assert response.status_code == 415, response.get_json()
    assert counts() == before and server.open_transactions == [0]


def test_a_repeated_external_id_is_answered_without_downloading(clients, source, audio_server):
    wav = make_fixture("wav_pcm16_8k").read_bytes()
    server = audio_server(wav)
    body = {"audio_url": server.url, "external_id": "u-2"}
    first = clients["ingest"].post(CALLS, headers=source.headers, json=body)
    assert first.status_code == 202
    again = clients["ingest"].post(CALLS, headers=source.headers, json=body)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert server.served == 1
