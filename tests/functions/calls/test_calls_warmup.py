"""The warm-up of a function (call_downloader.warmup): the first request waits for it, and a
warm-up that failed (the database was down) only means the request does the work itself."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from calls_helpers import BASE, make_call

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "functions" / "calls" / "main.py"


@pytest.fixture
def fresh_warmup(monkeypatch):
    """This process's warm-up state as in a container that has just started."""
    from call_downloader import warmup

    monkeypatch.setattr(warmup, "_started", False)
    monkeypatch.setattr(warmup, "_done", threading.Event())
    monkeypatch.setattr(warmup, "_failures", {})
    return warmup


def test_first_request_after_a_failed_warm_up_gets_the_right_answer(
    fresh_warmup, people, monkeypatch
):
    import functions_framework
    from sqlalchemy.exc import OperationalError

    from call_downloader.db import engine

    call = make_call(people["src"], external_id="WARM-1")
    real_get_engine = engine.get_engine
    down = threading.Event()
    down.set()

    def get_engine():
        if down.is_set():
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))
        return real_get_engine()

    monkeypatch.setattr(engine, "get_engine", get_engine)
    engine.dispose_engine()
    app = functions_framework.create_app(target="calls", source=str(SOURCE))
    fresh_warmup.wait()
    assert "database" in fresh_warmup.failures()
    down.clear()  # the database is back

    response = app.test_client().get(f"{BASE}/calls", headers=people["admin"].headers)
    assert response.status_code == 200, response.get_json()
    assert [item["id"] for item in response.get_json()["items"]] == [str(call)]


def test_first_request_waits_for_the_warm_up(fresh_warmup, people, monkeypatch):
    import functions_framework

    order: list[str] = []
    release = threading.Event()

    def slow_step():
        release.wait(10)
        order.append("warm-up")

    monkeypatch.setattr(fresh_warmup, "STEPS", (("slow", slow_step), *fresh_warmup.STEPS))
    app = functions_framework.create_app(target="calls", source=str(SOURCE))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # the probe does not wait

    answers: list[int] = []

    def first_request():
        answers.append(client.get(f"{BASE}/calls", headers=people["admin"].headers).status_code)
        order.append("request")

    thread = threading.Thread(target=first_request)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()  # waiting for the warm-up
    release.set()
    thread.join(30)
    assert order == ["warm-up", "request"]
    assert answers == [200]
