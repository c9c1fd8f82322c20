"""deliver.handle driven with real CloudEvents on the real PostgreSQL; each destination is a
real HTTP server on 127.0.0.1 that verifies the Standard Webhooks signature and answers from a
script. Retries are driven by handing deliver the `delivery.due` events it put in the outbox,
as the relay and the dispatcher would."""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))

RETRIES = 5  # DELIVERY_RETRY_DELAYS of the tests: five delays of 0.2 s


@dataclass
class Hook:
    webhook_id: str
    signature: str
    valid: bool
    body: dict[str, Any]
    path: str


@dataclass
class ScriptedDestination:
    """A destination application: verifies each webhook with `secrets` (any of them) and
    answers the next (status, headers) of `answers`, then `default`."""

    secrets: list[str]
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    hooks: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verifies_with(self, secret: str, body: bytes, headers: dict[str, str]) -> bool:
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    @Request.application
    def app(self, request: Request) -> Response:
        raw = request.get_data()
        headers = dict(request.headers)
        valid = all(self.verifies_with(s, raw, headers) for s in self.secrets)
        with self._lock:
            self.hooks.append(
                Hook(
                    request.headers.get("webhook-id", ""),
                    request.headers.get("webhook-signature", ""),
                    valid,
                    json.loads(raw) if raw else {},
                    request.path,
                )
            )
            status, extra = self.answers.pop(0) if self.answers else self.default
        return Response("answer excerpt", status=status, headers=extra)


@pytest.fixture
def servers() -> Iterator[list[ScriptedDestination]]:
    started: list[ScriptedDestination] = []
    yield started
    for server in started:
        server.server.shutdown()


@pytest.fixture
def add_destination(db, servers, monkeypatch) -> Any:
    """`add_destination(name, ...)` -> (destination id, its server): an enabled destination
    whose URL is a new scripted server, on DESTINATION_URL_ALLOWLIST unless `allowlisted` is
    False (it listens on loopback, which is no public address)."""
    from calls_helpers import make_destination

    from call_downloader.config import reset_settings
    from call_downloader.net.webhooks import generate_secret

    listed: list[str] = []

    def add(
        name: str,
        *,
        answers: list[tuple[int, dict[str, str]]] | None = None,
        default: tuple[int, dict[str, str]] = (200, {}),
        enabled: bool = True,
        previous_secret: str | None = None,
        previous_expires: datetime | None = None,
        allowlisted: bool = True,
    ) -> tuple[uuid.UUID, ScriptedDestination]:
        secret = generate_secret()
        checked = [secret] + ([previous_secret] if previous_secret else [])
        server = ScriptedDestination(checked, list(answers or []), default)
        servers.append(server)
        if allowlisted:
            listed.append(f"127.0.0.1:{server.server.server_port}")
            monkeypatch.setenv("DESTINATION_URL_ALLOWLIST", ",".join(listed))
            reset_settings()
        dest_id = make_destination(
            name,
            url=server.url,
            secret=secret,
            enabled=enabled,
            previous_secret=previous_secret,
            previous_secret_expires_at=previous_expires,
        )
        return dest_id, server

    return add


@pytest.fixture
def call_id(db) -> uuid.UUID:
    """A processed call with AI result version 1."""
    from calls_helpers import make_call, make_user

    return make_call(
        make_user("src", "source"),
        status="processed",
        reached="processed",
        external_id="ext-1",
        metadata={"agent": "Zoë"},
    )


def cloud_event(type_name: str, call_id: uuid.UUID, data: dict[str, Any], **attrs: Any) -> Any:
    from cloudevents.http import CloudEvent

    from call_downloader.events import types as ev

    attributes = {
        "type": getattr(ev, type_name),
        "source": "/test",
        "subject": str(call_id),
        "id": str(uuid.uuid4()),
        **attrs,
    }
    return CloudEvent(attributes, data)


def processed_event(call_id: uuid.UUID, version: int = 1, **attrs: Any) -> Any:
    return cloud_event("CALL_PROCESSED", call_id, {"result_version": version}, **attrs)


def handle(event: Any) -> None:
    from call_downloader.pipeline import deliver

    deliver.handle(event)


def rows(statement: Any) -> list[Any]:
    from call_downloader.db.engine import get_engine

    with get_engine().connect() as conn:
        return list(conn.execute(statement).all())


def deliveries(call_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    """The call's deliveries by destination id."""
    from sqlalchemy import select

    from call_downloader.db.models import Delivery

    table = Delivery.__table__
    found = rows(select(table).where(table.c.call_id == call_id))
    return {row.destination_id: row for row in found}


def attempts(delivery_id: str) -> list[Any]:
    from sqlalchemy import select

    from call_downloader.db.models import DeliveryAttempt

    table = DeliveryAttempt.__table__
    return rows(select(table).where(table.c.delivery_id == delivery_id).order_by(table.c.number))


def the_call(call_id: uuid.UUID) -> Any:
    from sqlalchemy import select

    from call_downloader.pipeline.common import CALLS

    [row] = rows(select(CALLS).where(CALLS.c.id == call_id))
    return row


def timeline(call_id: uuid.UUID) -> list[Any]:
    from sqlalchemy import select

    from call_downloader.pipeline.common import TIMELINE

    return rows(
        select(TIMELINE).where(TIMELINE.c.call_id == call_id).order_by(TIMELINE.c.at, TIMELINE.c.id)
    )


def pending_due(call_id: uuid.UUID) -> list[Any]:
    """The unpublished delivery.due events of the call, oldest first."""
    from sqlalchemy import select

    from call_downloader.db.models import OutboxEvent
    from call_downloader.events import types as ev

    table = OutboxEvent.__table__
    return rows(
        select(table)
        .where(
            table.c.subject == str(call_id),
            table.c.type == ev.DELIVERY_DUE,
            table.c.published_at.is_(None),
        )
        .order_by(table.c.created_at)
    )


def all_outbox(call_id: uuid.UUID) -> list[Any]:
    from sqlalchemy import select

    from call_downloader.db.models import OutboxEvent

    table = OutboxEvent.__table__
    return rows(select(table).where(table.c.subject == str(call_id)))


def fire(row: Any) -> None:
    """What the relay and the dispatcher do with a due outbox event: publish it, then hand
    it to deliver."""
    from sqlalchemy import update

    from call_downloader.db.engine import get_engine
    from call_downloader.db.models import OutboxEvent
    from call_downloader.events import outbox
    from call_downloader.events import types as ev

    table = OutboxEvent.__table__
    with get_engine().begin() as conn:
        conn.execute(
            update(table).where(table.c.id == row.id).values(published_at=datetime.now(UTC))
        )
    envelope = outbox.to_envelope(row)
    handle(ev.parse_structured(json.dumps(envelope, default=str).encode()))


def attempt_counter(destination: str, outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "calldl_delivery_attempts_total", {"destination": destination, "outcome": outcome}
    )
    return value or 0.0


def set_enabled(dest_id: uuid.UUID, enabled: bool) -> None:
    from sqlalchemy import update

    from call_downloader.db.engine import get_engine
    from call_downloader.db.models import Destination

    table = Destination.__table__
    with get_engine().begin() as conn:
        conn.execute(update(table).where(table.c.id == dest_id).values(enabled=enabled))


# -- fan-out and the first attempt -------------------------------------------------------------


def test_one_signed_webhook_per_destination_with_the_delivery_id(call_id, add_destination, caplog):
    a_id, a = add_destination("dest-a")
    b_id, b = add_destination("dest-b")
    delivered_before = attempt_counter("dest-a", "delivered")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    with caplog.at_level(logging.INFO, logger="call_downloader.pipeline.deliver"):
        handle(processed_event(call_id, traceparent=trace))

    found = deliveries(call_id)
    assert set(found) == {a_id, b_id}
    for dest_id, server in ((a_id, a), (b_id, b)):
        delivery = found[dest_id]
        [hook] = server.hooks
        assert hook.valid, "the signature verifies with the destination's secret"
        assert hook.webhook_id == delivery.id and delivery.id.startswith("msg_")
        assert hook.signature.startswith("v1,") and " " not in hook.signature
        assert hook.body == {
            "type": "call.processed",
            "call": {
                "id": str(call_id),
                "external_id": "ext-1",
                "duration_seconds": 12.5,
                "format": "mp3",
                "size_bytes": hook.body["call"]["size_bytes"],
                "sha256": hook.body["call"]["sha256"],
                "received_at": the_call(call_id).received_at.isoformat(),
                "metadata": {"agent": "Zoë"},
            },
            "result": {"transcript": "hello"},
        }
        assert (delivery.status, delivery.attempts, delivery.round) == ("delivered", 1, 1)
        assert (delivery.result_version, delivery.last_status_code) == (1, 200)
        assert delivery.last_error is None and delivery.next_attempt_at is None
        assert delivery.delivered_at is not None
        [attempt] = attempts(delivery.id)
        assert (attempt.number, attempt.status_code, attempt.error) == (1, 200, None)
        assert attempt.response_excerpt == "answer excerpt"
        assert attempt.latency_ms is not None and attempt.latency_ms >= 0
    assert a.hooks[0].body == b.hooks[0].body

    call = the_call(call_id)
    assert call.status == "delivered" and call.delivered_at is not None
    assert call.error_reason is None
    entries = [(t.stage, t.event, t.detail) for t in timeline(call_id)]
    assert sorted((e for e in entries if e[1] == "delivered"), key=str) == sorted(
        (
            (
                "deliver",
                "delivered",
                {"webhook_id": found[d].id, "destination": name, "attempt": 1},
            )
            for d, name in ((a_id, "dest-a"), (b_id, "dest-b"))
        ),
        key=str,
    )
    # Both fallback events were written with the deliveries and withdrawn with the attempts.
    assert pending_due(call_id) == []
    assert all_outbox(call_id) == []
    assert attempt_counter("dest-a", "delivered") == delivered_before + 1
    messages = [r.getMessage() for r in caplog.records]
    assert "delivery attempt to dest-a: delivered (HTTP 200)" in messages
    assert "delivery attempt to dest-b: delivered (HTTP 200)" in messages


def test_a_rotated_secret_signs_alongside_until_it_expires(call_id, add_destination):
    from datetime import timedelta

    from call_downloader.net.webhooks import generate_secret

    old = generate_secret()
    _, server = add_destination(
        "rotating", previous_secret=old, previous_expires=datetime.now(UTC) + timedelta(hours=1)
    )
    expired_old = generate_secret()
    _, expired = add_destination(
        "expired",
        previous_secret=expired_old,
        previous_expires=datetime.now(UTC) - timedelta(seconds=1),
    )
    expired.secrets = expired.secrets[:1]  # only the current secret can verify it

    handle(processed_event(call_id))

    [hook] = server.hooks
    assert hook.valid and len(hook.signature.split(" ")) == 2  # verifies with either secret
    [hook] = expired.hooks
    assert hook.valid and len(hook.signature.split(" ")) == 1


def test_a_duplicate_event_does_nothing(call_id, add_destination):
    _, server = add_destination("dest")
    event = processed_event(call_id)
    handle(event)
    before = (deliveries(call_id), timeline(call_id), all_outbox(call_id))

    handle(event)  # redelivered by the broker

    assert len(server.hooks) == 1
    assert (deliveries(call_id), timeline(call_id), all_outbox(call_id)) == before


def test_another_processed_event_for_the_same_version_adds_no_delivery(call_id, add_destination):
    d_id, server = add_destination("dest", answers=[(503, {})])
    handle(processed_event(call_id))
    first = deliveries(call_id)[d_id]

    handle(processed_event(call_id))  # a new event id, the same result version

    assert deliveries(call_id)[d_id] == first
    assert len(server.hooks) == 1
    assert len(pending_due(call_id)) == 1  # only the retry of the first attempt


def test_an_event_for_a_superseded_result_does_nothing(call_id, add_destination):
    _, server = add_destination("dest")
    handle(processed_event(call_id, version=2))
    assert server.hooks == [] and deliveries(call_id) == {} and timeline(call_id) == []


def test_no_enabled_destination_is_noted_on_the_timeline(call_id, add_destination):
    _, server = add_destination("off", enabled=False)
    handle(processed_event(call_id))
    assert server.hooks == [] and deliveries(call_id) == {}
    assert [(t.stage, t.event) for t in timeline(call_id)] == [("deliver", "no_destination")]
    assert the_call(call_id).status == "processed"


def test_a_disabled_destination_gets_no_delivery(call_id, add_destination):
    on_id, on = add_destination("on")
    _, off = add_destination("off", enabled=False)
    handle(processed_event(call_id))
    assert set(deliveries(call_id)) == {on_id}
    assert len(on.hooks) == 1 and off.hooks == []
    assert the_call(call_id).status == "delivered"


# -- retries, dead letters, 410 ----------------------------------------------------------------


def test_5xx_retries_with_the_same_webhook_id_then_dead_letters(call_id, add_destination):
    d_id, server = add_destination("flaky", default=(503, {}))
    retry_before = attempt_counter("flaky", "retry")
    dead_before = attempt_counter("flaky", "dead")

    handle(processed_event(call_id))

    delivery = deliveries(call_id)[d_id]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert delivery.last_error == "HTTP 503" and delivery.next_attempt_at is not None
    [due] = pending_due(call_id)  # the fallback of attempt 1 withdrawn; attempt 2 scheduled
    assert due.data == {
        "call_id": str(call_id),
        "delivery_id": delivery.id,
        "attempt": 2,
        "round": 1,
    }
    delay = (due.available_at - due.created_at).total_seconds()
    assert 0.15 <= delay <= 0.25  # 0.2 s with jitter
    [retry] = [t for t in timeline(call_id) if t.event == "delivery_retry_scheduled"]
    assert retry.detail["webhook_id"] == delivery.id
    assert (retry.detail["attempt"], retry.detail["status_code"]) == (1, 503)

    for number in range(2, RETRIES + 2):
        [due] = pending_due(call_id)
        assert due.data["attempt"] == number
        fire(due)
        assert deliveries(call_id)[d_id].attempts == number

    delivery = deliveries(call_id)[d_id]
    assert delivery.status == "dead" and delivery.next_attempt_at is None
    assert delivery.last_error == f"gave up after {RETRIES + 1} attempts; last: HTTP 503"
    assert pending_due(call_id) == []
    assert [h.webhook_id for h in server.hooks] == [delivery.id] * (RETRIES + 1)
    assert all(h.valid for h in server.hooks)
    assert [a.number for a in attempts(delivery.id)] == list(range(1, RETRIES + 2))
    call = the_call(call_id)
    assert (call.status, call.error_stage, call.error_reason) == (
        "failed",
        "deliver",
        "delivery_dead_lettered",
    )
    assert call.error_detail == f"flaky: gave up after {RETRIES + 1} attempts"
    events = [t.event for t in timeline(call_id)]
    assert events.count("delivery_retry_scheduled") == RETRIES
    assert events[-1] == "failed"
    assert attempt_counter("flaky", "retry") == retry_before + RETRIES
    assert attempt_counter("flaky", "dead") == dead_before + 1

    # A late copy of an earlier event finds the attempt made: nothing is sent.
    fire(due)
    assert len(server.hooks) == RETRIES + 1


def test_retry_after_is_honoured(call_id, add_destination):
    d_id, _ = add_destination("busy", answers=[(429, {"Retry-After": "120"})])
    handle(processed_event(call_id))
    delivery = deliveries(call_id)[d_id]
    assert (delivery.status, delivery.last_status_code) == ("pending", 429)
    [due] = pending_due(call_id)
    assert (due.available_at - due.created_at).total_seconds() >= 119.9
    waits = (delivery.next_attempt_at - delivery.updated_at).total_seconds()
    assert waits >= 119


def test_redirects_are_not_followed(call_id, add_destination):
    _, target = add_destination("target", enabled=False)
    d_id, server = add_destination("moved", answers=[(307, {"Location": target.url})])
    handle(processed_event(call_id))
    delivery = deliveries(call_id)[d_id]
    assert delivery.last_error == "HTTP 307: redirects are not followed"
    assert (delivery.status, delivery.last_status_code) == ("pending", 307)
    assert len(server.hooks) == 1 and target.hooks == []
    assert len(pending_due(call_id)) == 1


def test_an_internal_destination_off_the_allowlist_is_never_posted_to(call_id, add_destination):
    """Issue 16, item 3: a destination made through the API that points at an internal
    address (stored before the rule, or its name now resolving there) is refused at each
    attempt without a connection, like at creation; the configured destination is trusted."""
    d_id, server = add_destination("internal", allowlisted=False)
    handle(processed_event(call_id))
    delivery = deliveries(call_id)[d_id]
    assert delivery.last_error == "destination refused: loopback addresses are not allowed"
    assert delivery.last_status_code is None and server.hooks == []
    [attempt] = attempts(delivery.id)
    assert attempt.status_code is None and attempt.response_excerpt == ""


def test_the_configured_destination_may_be_internal(call_id, add_destination):
    from sqlalchemy import update

    from call_downloader.db.engine import get_engine
    from call_downloader.db.models import Destination

    d_id, server = add_destination("default", allowlisted=False)
    table = Destination.__table__
    with get_engine().begin() as conn:
        conn.execute(update(table).where(table.c.id == d_id).values(from_config=True))
    handle(processed_event(call_id))
    assert deliveries(call_id)[d_id].status == "delivered"
    assert len(server.hooks) == 1


def test_410_gone_dead_letters_at_once(call_id, add_destination):
    d_id, server = add_destination("gone", default=(410, {}))
    gone_before = attempt_counter("gone", "gone")
    handle(processed_event(call_id))
    assert attempt_counter("gone", "gone") == gone_before + 1

    delivery = deliveries(call_id)[d_id]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("dead", 1, 410)
    assert delivery.last_error == "destination answered 410 Gone; last: HTTP 410 Gone"
    assert delivery.next_attempt_at is None
    assert pending_due(call_id) == [] and len(server.hooks) == 1
    call = the_call(call_id)
    assert (call.status, call.error_reason) == ("failed", "delivery_dead_lettered")
    assert call.error_detail == "gone: destination answered 410 Gone"
    failed = [t for t in timeline(call_id) if t.event == "failed"]
    assert [(t.stage, t.detail["reason"]) for t in failed] == [
        ("deliver", "delivery_dead_lettered")
    ]


def test_a_destination_disabled_before_a_retry_is_not_posted_to(call_id, add_destination):
    d_id, server = add_destination("paused", answers=[(503, {})])
    handle(processed_event(call_id))
    set_enabled(d_id, False)

    [due] = pending_due(call_id)
    fire(due)

    assert len(server.hooks) == 1  # only the first attempt
    delivery = deliveries(call_id)[d_id]
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert delivery.last_error == "destination disabled"
    assert delivery.last_status_code == 503  # from the last answer
    [_, second] = attempts(delivery.id)
    assert (second.number, second.status_code, second.error) == (2, None, "destination disabled")
    [due] = pending_due(call_id)
    assert due.data["attempt"] == 3

    set_enabled(d_id, True)
    fire(due)
    assert deliveries(call_id)[d_id].status == "delivered"
    assert [h.webhook_id for h in server.hooks] == [delivery.id] * 2
    assert the_call(call_id).status == "delivered"


def test_two_destinations_one_failing_leaves_the_call_processed(call_id, add_destination):
    ok_id, _ = add_destination("ok")
    bad_id, bad = add_destination("bad", default=(500, {}))
    handle(processed_event(call_id))

    found = deliveries(call_id)
    assert (found[ok_id].status, found[bad_id].status) == ("delivered", "pending")
    call = the_call(call_id)
    assert call.status == "processed" and call.delivered_at is None
    delivered = [t.detail["destination"] for t in timeline(call_id) if t.event == "delivered"]
    assert delivered == ["ok"]

    # The failing destination recovers: its retry delivers, and with it the call.
    bad.default = (200, {})
    [due] = pending_due(call_id)
    fire(due)
    assert deliveries(call_id)[bad_id].status == "delivered"
    call = the_call(call_id)
    assert call.status == "delivered" and call.delivered_at is not None


# -- cost ----------------------------------------------------------------------------------------


def test_statements_are_built_once_not_per_event(add_destination):
    """Building a statement (and its cache key) per event cost as much CPU as running it: the
    second call's events run the very statement objects the first call's did."""
    from calls_helpers import make_call, make_user
    from statement_capture import built_anew, statements_of

    from call_downloader.events import outbox
    from call_downloader.events import types as ev

    dest_id, server = add_destination("dest-a", answers=[(503, {}), (200, {}), (503, {})])
    source = make_user("src", "source")

    def fan_out_retry_and_deliver() -> tuple[uuid.UUID, list[Any]]:
        call = make_call(source, status="processed", reached="processed")
        executed = statements_of(lambda: handle(processed_event(call)))  # 503: a retry
        [due] = pending_due(call)
        envelope = json.dumps(outbox.to_envelope(due), default=str).encode()
        executed += statements_of(lambda: handle(ev.parse_structured(envelope)))  # 200
        return call, executed

    (first_call, first), (second_call, second) = (fan_out_retry_and_deliver() for _ in range(2))

    for call in (first_call, second_call):
        assert deliveries(call)[dest_id].status == "delivered"
        assert the_call(call).status == "delivered"
    assert len(server.hooks) == 4
    assert len(second) >= 10  # the claim, the look, the deliveries, two attempts ...
    assert built_anew(first, second) == []
