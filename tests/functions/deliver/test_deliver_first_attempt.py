"""deliver makes a delivery's first attempt inline, with a scheduled delivery.due event as the
fallback: withdrawn once the attempt is recorded, and making the attempt (same webhook-id)
when the inline one was cut short. Real PostgreSQL; the destination is a real HTTP server on
127.0.0.1; the function is functions-framework's app for functions/deliver/main.py."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "functions" / "deliver" / "main.py"
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))


class Receiver:
    """A destination that records every webhook it gets."""

    def __init__(self) -> None:
        self.hooks: list[dict[str, Any]] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @Request.application
    def app(self, request: Request) -> Response:
        self.hooks.append({"id": request.headers.get("webhook-id"), "body": request.get_json()})
        return Response(status=204)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def client(db) -> Any:
    import functions_framework

    return functions_framework.create_app(target="deliver", source=str(SOURCE)).test_client()


@pytest.fixture
def processed_call(db, receiver, monkeypatch) -> uuid.UUID:
    """A processed call (AI result version 1) and one enabled destination: the receiver,
    on loopback, hence on DESTINATION_URL_ALLOWLIST."""
    from calls_helpers import make_call, make_destination, make_user

    from call_downloader.config import reset_settings
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Destination

    monkeypatch.setenv("DESTINATION_URL_ALLOWLIST", receiver.url.split("/")[2])
    reset_settings()

    with unit_of_work() as session:  # only the receiver is a destination
        for dest in session.query(Destination).all():
            dest.enabled = False
    make_destination("receiver", url=receiver.url)
    return make_call(make_user("src", "source"), status="processed", reached="processed")


def post_event(client: Any, type_: str, call_id: uuid.UUID, data: dict[str, Any]) -> Any:
    from call_downloader.events import types as ev

    return client.post(
        "/",
        headers={
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-source": "/test",
            "ce-type": getattr(ev, type_),
            "ce-subject": str(call_id),
            "Content-Type": "application/json",
        },
        data=json.dumps(data),
    )


def delivery_and_pending_due(call_id: uuid.UUID) -> tuple[Any, list[Any]]:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call, Delivery, OutboxEvent

    with unit_of_work() as session:
        delivery = session.query(Delivery).filter(Delivery.call_id == call_id).one()
        due = (
            session.query(OutboxEvent)
            .filter(OutboxEvent.subject == str(call_id), OutboxEvent.published_at.is_(None))
            .all()
        )
        status = session.get(Call, call_id).status
        session.expunge_all()
        return (delivery, status), due


def test_first_attempt_is_made_inline_and_its_fallback_withdrawn(client, processed_call, receiver):
    r = post_event(client, "CALL_PROCESSED", processed_call, {"result_version": 1})
    assert r.status_code == 200, r.data

    (delivery, status), due = delivery_and_pending_due(processed_call)
    assert [h["id"] for h in receiver.hooks] == [delivery.id]
    assert receiver.hooks[0]["body"]["call"]["id"] == str(processed_call)
    assert (delivery.status, delivery.attempts, status) == ("delivered", 1, "delivered")
    assert due == []  # the scheduled fallback was withdrawn with the recorded attempt

    # Had the fallback been published already, it arrives stale and is skipped.
    r = post_event(
        client,
        "DELIVERY_DUE",
        processed_call,
        {"call_id": str(processed_call), "delivery_id": delivery.id, "attempt": 1, "round": 1},
    )
    assert r.status_code == 200
    assert len(receiver.hooks) == 1


def test_cut_short_first_attempt_is_made_by_its_scheduled_event(
    client, processed_call, receiver, monkeypatch
):
    from call_downloader.events import outbox
    from call_downloader.pipeline import deliver

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionResetError("cut short before the attempt was recorded")

    monkeypatch.setattr(deliver, "post_webhook", broken)
    before = datetime.now(UTC)
    r = post_event(client, "CALL_PROCESSED", processed_call, {"result_version": 1})
    assert r.status_code == 200, r.data  # handled: the fallback owns the attempt now

    (delivery, status), due = delivery_and_pending_due(processed_call)
    assert (delivery.status, delivery.attempts, status) == ("pending", 0, "processed")
    assert receiver.hooks == []
    [fallback] = due
    assert fallback.type.endswith("delivery.due.v1")
    assert fallback.data == {
        "call_id": str(processed_call),
        "delivery_id": delivery.id,
        "attempt": 1,
        "round": 1,
    }
    waited = (fallback.available_at - before).total_seconds()
    assert waited >= deliver.first_attempt_fallback_seconds() - 1

    # The relay publishes it when due; the dispatcher hands it to deliver.
    monkeypatch.undo()
    envelope = outbox.to_envelope(fallback)
    r = client.post(
        "/",
        headers={"Content-Type": "application/cloudevents+json"},
        data=json.dumps(envelope, default=str),
    )
    assert r.status_code == 200, r.data
    (delivery, status), _ = delivery_and_pending_due(processed_call)
    assert [h["id"] for h in receiver.hooks] == [delivery.id]
    assert (delivery.status, delivery.attempts, status) == ("delivered", 1, "delivered")
