"""Fixtures of the AI client tests (the fake AI service lives in aifixtures.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from aifixtures import FakeAi
from werkzeug.serving import make_server


@pytest.fixture
def fake_ai() -> Iterator[FakeAi]:
    ai = FakeAi()
    threads_before = set(threading.enumerate())
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)  # no access log lines in the test output
    server = make_server("127.0.0.1", 0, ai.wsgi, threaded=True)
    ai.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield ai
    finally:
        ai.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        # Request threads are daemons the server does not wait for: wait here, so one test's
        # stragglers (a route still unwinding) never run into the next test's measurements.
        for straggler in set(threading.enumerate()) - threads_before:
            straggler.join(timeout=10)
        werkzeug_log.setLevel(level)


@pytest.fixture
def audio_file(tmp_path) -> tuple[str, bytes]:
    data = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 400
    path = tmp_path / "call.mp3"
    path.write_bytes(data)
    return str(path), data
