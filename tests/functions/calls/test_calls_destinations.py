"""Destinations over HTTP: list, add, edit, disable, rotate with overlap, test event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from calls_helpers import BASE, make_destination
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import AuditLog, Destination


class Inbox:
    """A destination on 127.0.0.1 that records what it got and which secrets verify it."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((dict(request.headers), request.get_data()))
        return Response("thanks", self.status)(environ, start_response)

    def verifies(self, secret: str, index: int = -1) -> bool:
        headers, body = self.received[index]
        try:
            Webhook(secret).verify(body, headers)
            return True
        except WebhookVerificationError:
            return False


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    app = Inbox()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@pytest.fixture(autouse=True)
def _loopback_receivers(monkeypatch) -> None:
    """These tests manage destinations whose receivers listen on 127.0.0.1, which API-made
    destinations reach only through the allowlist (the address policy itself is tested in
    tests/hostile/test_hostile_destinations.py)."""
    from call_downloader.config import reset_settings

    monkeypatch.setenv("DESTINATION_URL_ALLOWLIST", "127.0.0.1:*")
    reset_settings()


def test_create_list_edit_disable(client, people):
    h = people["admin"].headers
    r = client.post(
        f"{BASE}/destinations", json={"name": "CRM", "url": "http://127.0.0.1:8999/in"}, headers=h
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert r.headers["Location"].endswith(created["id"])
    listing = client.get(f"{BASE}/destinations", headers=people["viewer"].headers).get_json()
    [item] = listing["items"]
    assert "secret" not in item and item["secret_hint"].endswith(created["secret"][-4:])
    assert item["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}

    r = client.patch(
        f"{BASE}/destinations/{created['id']}", json={"enabled": False, "name": "CRM EU"}, headers=h
    )
    assert (
        r.status_code == 200
        and r.get_json()["enabled"] is False
        and r.get_json()["name"] == "CRM EU"
    )
    operator = people["oper"].headers  # operators switch destinations on and off
    url = f"{BASE}/destinations/{created['id']}"
    r = client.patch(url, json={"enabled": True}, headers=operator)
    assert r.status_code == 200 and r.get_json()["enabled"] is True
    got = client.get(f"{BASE}/destinations/{created['id']}", headers=h).get_json()
    assert got["enabled"] is True
    with unit_of_work() as session:
        actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == ["destination.create", "destination.update", "destination.update"]


def test_duplicate_names_conflict(client, people):
    h = people["admin"].headers
    body = {"name": "dup", "url": "http://127.0.0.1:8999/a"}
    assert client.post(f"{BASE}/destinations", json=body, headers=h).status_code == 201
    assert client.post(f"{BASE}/destinations", json=body, headers=h).status_code == 409


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/",
        "http://0.0.0.0/",
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        "javascript:alert(1)",
        "not a url",
        "",
        "http://224.0.0.1/",
    ],
)
def test_forbidden_urls_are_refused(client, people, url):
    r = client.post(
        f"{BASE}/destinations", json={"name": "x", "url": url}, headers=people["admin"].headers
    )
    assert r.status_code == 422, (url, r.get_json())
    dest = make_destination("ok")
    r = client.patch(
        f"{BASE}/destinations/{dest}", json={"url": url}, headers=people["admin"].headers
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "a"},
        {"url": "http://127.0.0.1/"},
        {"name": 5, "url": "http://127.0.0.1/"},
        {"name": "a", "url": "http://127.0.0.1/", "secret": "nope!"},
        {"name": "a", "url": "http://127.0.0.1/", "secret": "whsec_YWJj"},  # 3 bytes
        {"name": "a", "url": "http://127.0.0.1/", "enabled": "yes"},
        {"name": "a", "url": "http://127.0.0.1/", "id": "x"},
        {"name": "x" * 101, "url": "http://127.0.0.1/"},
        {"name": "a\x00b", "url": "http://127.0.0.1/"},
    ],
)
def test_create_validates(client, people, body):
    r = client.post(f"{BASE}/destinations", json=body, headers=people["admin"].headers)
    assert 400 <= r.status_code < 500, r.get_json()


def test_roles(client, people):
    dest = make_destination("crm")
    for who in ("viewer", "src"):
        h = people[who].headers
        assert (
            client.post(
                f"{BASE}/destinations", json={"name": "n", "url": "http://127.0.0.1/"}, headers=h
            ).status_code
            == 403
        )
        assert (
            client.patch(
                f"{BASE}/destinations/{dest}", json={"enabled": False}, headers=h
            ).status_code
            == 403
        )
        assert (
            client.post(f"{BASE}/destinations/{dest}/rotate-secret", headers=h).status_code == 403
        )
        assert client.post(f"{BASE}/destinations/{dest}/test", headers=h).status_code == 403
    assert client.get(f"{BASE}/destinations", headers=people["src"].headers).status_code == 403
    assert client.get(f"{BASE}/destinations", headers=people["viewer"].headers).status_code == 200


def test_config_destination_is_managed_by_configuration(client, people):
    dest = make_destination("default", from_config=True)
    h = people["admin"].headers
    assert (
        client.patch(
            f"{BASE}/destinations/{dest}", json={"url": "http://127.0.0.1:1/x"}, headers=h
        ).status_code
        == 409
    )
    assert client.post(f"{BASE}/destinations/{dest}/rotate-secret", headers=h).status_code == 409
    assert (
        client.patch(f"{BASE}/destinations/{dest}", json={"enabled": False}, headers=h).status_code
        == 200
    )


def test_rotation_signs_with_both_secrets_during_the_overlap(client, people, inbox):
    app, url = inbox
    h = people["admin"].headers
    created = client.post(
        f"{BASE}/destinations", json={"name": "crm", "url": url}, headers=h
    ).get_json()
    old = created["secret"]

    test = client.post(f"{BASE}/destinations/{created['id']}/test", headers=h).get_json()
    assert test["ok"] is True and test["status_code"] == 204 and test["signatures"] == 1
    assert app.verifies(old)
    assert json.loads(app.received[-1][1])["type"] == "test"

    r = client.post(
        f"{BASE}/destinations/{created['id']}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=h,
    )
    assert r.status_code == 200, r.get_json()
    rotated = r.get_json()
    new = rotated["secret"]
    assert new != old and rotated["rotating"] is True and rotated["previous_secret_expires_at"]
    test = client.post(f"{BASE}/destinations/{created['id']}/test", headers=h).get_json()
    assert test["ok"] and test["signatures"] == 2
    assert app.verifies(old) and app.verifies(new)  # receivers on either secret accept it

    # no overlap: the old secret stops at once
    client.post(
        f"{BASE}/destinations/{created['id']}/rotate-secret", json={"overlap_seconds": 0}, headers=h
    )
    test = client.post(f"{BASE}/destinations/{created['id']}/test", headers=h).get_json()
    assert test["signatures"] == 1 and not app.verifies(new) and not app.verifies(old)


def test_rotate_to_a_given_secret_and_validation(client, people):
    dest = make_destination("crm")
    h = people["admin"].headers
    given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    r = client.post(f"{BASE}/destinations/{dest}/rotate-secret", json={"secret": given}, headers=h)
    assert r.status_code == 200 and r.get_json()["secret"] == given
    with unit_of_work() as session:
        assert session.get(Destination, dest).secret == given
    for body in (
        {"overlap_seconds": -1},
        {"overlap_seconds": "1"},
        {"secret": "plain"},
        {"secret": "whsec_YWJj"},  # 3 bytes: Standard Webhooks asks for 24 to 64
        {"secret": given},
        {"other": 1},
    ):
        r = client.post(f"{BASE}/destinations/{dest}/rotate-secret", json=body, headers=h)
        assert r.status_code == 422, (body, r.get_json())


def test_test_event_reports_a_failing_destination(client, people):
    dest = make_destination("closed", url="http://127.0.0.1:9/hook")  # discard port: refused
    r = client.post(f"{BASE}/destinations/{dest}/test", headers=people["admin"].headers)
    assert r.status_code == 200
    body = r.get_json()
    assert body["ok"] is False and body["error"]


def test_unknown_destination(client, people):
    h = people["admin"].headers
    assert client.get(f"{BASE}/destinations/nope", headers=h).status_code == 404
    assert (
        client.patch(
            f"{BASE}/destinations/00000000-0000-0000-0000-000000000000",
            json={"enabled": True},
            headers=h,
        ).status_code
        == 404
    )
