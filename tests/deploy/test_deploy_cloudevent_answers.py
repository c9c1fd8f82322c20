"""A CloudEvent function started as its image starts it (the Dockerfile's CMD:
`functions-framework --target ... --signature-type cloudevent`) and driven the way the
eventing-rabbitmq adapter drives it: binary-mode CloudEvents over HTTP. Its answers must be
the table of `call_downloader.events.answers` (SPEC 3.5a): a retriable 503 with Retry-After
while PostgreSQL cannot be reached (a proxy of this test, off), the event handled once it
can (proxy on), 400 for a malformed event, 2xx for a permanent failure recorded on the call.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from deploy_helpers import ROOT, serving_function

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))
from tcp_proxy import TcpProxy  # noqa: E402

from call_downloader.events.answers import disposition  # noqa: E402
from call_downloader.events.dispatcher import http_invoker  # noqa: E402

pytestmark = pytest.mark.integration

RETRIABLE = {404, 413, 425, 429, 502, 503, 504}  # cloudevents/sdk-go defaultRetriableErrors


def binary_event(call_id: uuid.UUID, *, event_id: str | None = None, subject: str | None = None):
    """Headers and body of a call.received event as the adapter posts it (binary mode)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id or str(uuid.uuid4()),
        "ce-source": "/call-downloader/ingest",
        "ce-type": "dev.calldownloader.call.received.v1",
        "ce-subject": subject or str(call_id),
        "ce-time": "2026-01-01T00:00:00Z",
        "content-type": "application/json",
    }
    return headers, json.dumps({"call_id": str(call_id)}).encode()


def structured(call_id: uuid.UUID):
    from cloudevents.http import CloudEvent

    from call_downloader.events import types as ev

    attributes = {"id": str(uuid.uuid4()), "source": "/test", "type": ev.CALL_RECEIVED}
    return CloudEvent({**attributes, "subject": str(call_id)}, {"call_id": str(call_id)})


def call_state(call_id: uuid.UUID) -> tuple[str, str | None]:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call

    with unit_of_work() as session:
        call = session.get(Call, call_id)
        assert call is not None
        return call.status, call.error_reason


def received_call(audio: bytes, fmt: str = "wav") -> uuid.UUID:
    from calls_helpers import make_call, make_user

    source = make_user(f"src-{uuid.uuid4().hex[:8]}", "source")
    return make_call(source, status="received", audio=audio, fmt=fmt, duration=None)


def test_transient_database_fault_is_retriable_and_the_event_handled_once_it_clears(
    db: None, database_url: str, tmp_path: Path
) -> None:
    from audio_fixtures import make_fixture

    call_id = received_call(make_fixture("wav_pcm16_8k").read_bytes())
    proxy = TcpProxy(5432)  # off: PostgreSQL refuses this function's connections
    through_proxy = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert through_proxy != database_url
    headers, body = binary_event(call_id)
    try:
        with serving_function("analyze-duration", tmp_path, DATABASE_URL=through_proxy) as base:
            with httpx.Client(base_url=base, timeout=60) as client:
                down = client.post("/", headers=headers, content=body)
                assert down.status_code == 503, down.text
                assert down.status_code in RETRIABLE
                assert int(down.headers["retry-after"]) > 0
                assert down.json()["error"]["code"] == "unavailable"
                assert client.get("/readyz").status_code == 503
                assert call_state(call_id) == ("received", None)
                # The compose dispatcher posts the same way and reads the same answer.
                answer = http_invoker(f"{base}/")(structured(call_id))
                assert (answer.status, answer.retry_after) == (
                    503,
                    int(down.headers["retry-after"]),
                )
                assert disposition(answer, 1, 8) == "retry"

                proxy.start()  # the fault clears: the adapter's next try is handled
                again = client.post("/", headers=headers, content=body)
                assert again.status_code == 200, again.text
                assert call_state(call_id) == ("analyzed", None)
                # A redelivery of the same event is settled without effect.
                assert client.post("/", headers=headers, content=body).status_code == 200
                assert disposition(http_invoker(f"{base}/")(structured(call_id)), 1, 8) == "ok"

                proxy.stop()  # and down again: a new event is retriable again
                headers2, body2 = binary_event(call_id)
                assert client.post("/", headers=headers2, content=body2).status_code == 503
    finally:
        proxy.close()


def test_malformed_and_permanent_outcomes(db: None, database_url: str, tmp_path: Path) -> None:
    bad_audio_call = received_call(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    with serving_function("analyze-duration", tmp_path, DATABASE_URL=database_url) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            # Not a call id: the event can never be handled.
            headers, body = binary_event(bad_audio_call, subject="not-a-uuid")
            answer = client.post("/", headers=headers, content=body)
            assert answer.status_code == 400, answer.text
            assert answer.status_code not in RETRIABLE
            # Not a CloudEvent at all (no ce- attributes): functions-framework's own 400.
            plain = client.post("/", content=b"{}", headers={"content-type": "application/json"})
            assert plain.status_code == 400
            # A recording that is not audio: failed for good, recorded on the call, settled.
            headers, body = binary_event(bad_audio_call)
            settled = client.post("/", headers=headers, content=body)
            assert settled.status_code == 200, settled.text
            assert call_state(bad_audio_call) == ("failed", "invalid_audio")
