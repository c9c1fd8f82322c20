"""The answer table of CloudEvent functions (call_downloader.events.answers, SPEC 3.5a), and
the three CloudEvent functions answering from it when PostgreSQL cannot be reached."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from call_downloader.events import answers
from call_downloader.events import types as ev
from call_downloader.events.answers import Answer, answer_for, disposition
from call_downloader.events.dispatcher import invoke

ROOT = Path(__file__).resolve().parents[3]
# cloudevents/sdk-go v2 protocol/http defaultRetriableErrors (what the RabbitmqSource retries).
SDK_RETRIABLE = {404, 413, 425, 429, 502, 503, 504}


def test_the_retriable_statuses_are_the_cloudevents_sdk_s() -> None:
    assert answers.RETRIABLE_STATUSES == SDK_RETRIABLE


def test_outcomes_map_to_answers() -> None:
    import psycopg
    import sqlalchemy.exc
    from cloudevents.exceptions import MissingRequiredFields

    assert answer_for(None) == answers.HANDLED
    assert answer_for(ev.MalformedEvent("subject is not a call id")).status == 400
    assert answer_for(MissingRequiredFields("no id")).status == 400
    transient = answer_for(
        sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError())
    )
    assert (transient.status, transient.retry_after) == (503, answers.TRANSIENT_RETRY_AFTER)
    assert answer_for(ConnectionError("redis")).status == 503
    pool = answer_for(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))
    assert pool.status == 429 and pool.retry_after == answers.THROTTLED_RETRY_AFTER
    throttled = answer_for(answers.Throttled("busy", retry_after=7))
    assert (throttled.status, throttled.headers()) == (429, {"Retry-After": "7"})
    # Nothing the table answers is a 500, and every failure but a malformed event is retried.
    for exc in (RuntimeError("x"), KeyError("y"), OSError("z")):
        assert answer_for(exc).status == 503


def test_dispositions() -> None:
    assert disposition(Answer(200), 1, 3) == "ok"
    assert disposition(Answer(204), 3, 3) == "ok"
    assert disposition(Answer(400), 1, 3) == "poison"
    assert disposition(Answer(500), 1, 3) == "poison"  # as the adapter: not retriable
    assert disposition(Answer(503, retry_after=5), 1, 3) == "retry"
    assert disposition(Answer(429), 2, 3) == "retry"
    assert disposition(Answer(503), 3, 3) == "dead_letter"


def test_invoke_reads_an_answer_a_return_or_an_exception() -> None:
    def raises(_event):
        raise ev.MalformedEvent("bad")

    assert invoke(lambda _e: None, None).status == 200
    assert invoke(lambda _e: Answer(429, retry_after=3), None).retry_after == 3
    assert invoke(raises, None).status == 400


def _refused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = sock.getsockname()[1]
    _refused_port.keep = sock  # type: ignore[attr-defined]
    return port


@pytest.mark.parametrize(
    ("folder", "target", "event_type"),
    [
        ("analyze-duration", "analyze_duration", ev.CALL_RECEIVED),
        ("call-ai", "call_ai", ev.CALL_ANALYZED),
        ("deliver", "deliver", ev.CALL_PROCESSED),
    ],
)
def test_cloudevent_functions_answer_503_when_the_database_is_down(
    folder: str, target: str, event_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functions_framework

    from call_downloader.config import reset_settings
    from call_downloader.db.engine import dispose_engine

    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{_refused_port()}/x")
    reset_settings()
    dispose_engine()
    try:
        app = functions_framework.create_app(
            target, str(ROOT / "functions" / folder / "main.py"), "cloudevent"
        )
        call_id = str(uuid.uuid4())
        headers = {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "/test",
            "ce-type": event_type,
            "ce-subject": call_id,
            "content-type": "application/json",
        }
        body = f'{{"call_id": "{call_id}", "run": 1, "result_version": 1}}'
        answer = app.test_client().post("/", headers=headers, data=body)
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.headers["Retry-After"] == str(answers.TRANSIENT_RETRY_AFTER)
        assert answer.get_json()["error"]["code"] == "unavailable"
    finally:
        dispose_engine()
