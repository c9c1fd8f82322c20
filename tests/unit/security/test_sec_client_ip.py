"""The client's address (issue 16, item 1): the header the proxy in front sets
(CLIENT_IP_HEADER), else the TCP peer; a client's X-Forwarded-For is never believed. The
`make run` gateway sets that header itself, from the peer or from a listed proxy."""

from __future__ import annotations

from types import SimpleNamespace

import flask
import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from call_downloader.security import identity
from call_downloader.server.gateway import Gateway


def request_with(remote: str, headers: dict[str, str] | None = None) -> flask.Request:
    app = flask.Flask("t")
    ctx = app.test_request_context("/", headers=headers or {}, environ_base={"REMOTE_ADDR": remote})
    ctx.push()
    req = flask.request._get_current_object()
    ctx.pop()
    return req


def with_header(monkeypatch, header: str) -> None:
    monkeypatch.setattr(identity, "get_settings", lambda: SimpleNamespace(client_ip_header=header))


def test_forwarded_for_is_never_believed(monkeypatch):
    with_header(monkeypatch, "")
    spoofed = {"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "1.2.3.4"}
    assert identity.client_ip(request_with("10.0.0.7", spoofed)) == "10.0.0.7"
    with_header(monkeypatch, "X-Real-IP")
    assert identity.client_ip(request_with("10.0.0.7", {"X-Forwarded-For": "1.2.3.4"})) == (
        "10.0.0.7"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 2001:db8::1 ", "2001:db8::1"),
        ("not-an-ip", "unknown"),
        ("203.0.113.9, 10.0.0.1", "unknown"),  # one address or nothing
    ],
)
def test_the_configured_header_is_the_address(monkeypatch, value, expected):
    with_header(monkeypatch, "X-Real-IP")
    assert identity.client_ip(request_with("10.0.0.7", {"X-Real-IP": value})) == expected


def seen_by_function(gateway: Gateway, remote: str, headers: dict[str, str]) -> str | None:
    """The X-Real-IP a function behind the `make run` gateway receives."""
    captured: dict[str, str | None] = {}

    def function(environ, start_response):
        captured["real_ip"] = Request(environ).headers.get("X-Real-IP")
        return Response("ok")(environ, start_response)

    gateway.apps = {"auth": function}
    client = Client(gateway)
    client.post("/api/v1/auth/token", headers=headers, environ_base={"REMOTE_ADDR": remote})
    return captured["real_ip"]


SPOOFED = {"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6"}


def test_make_run_gateway_sets_the_address_from_the_peer():
    gateway = Gateway({}, client_ip_header="X-Real-IP")
    assert seen_by_function(gateway, "198.51.100.4", SPOOFED) == "198.51.100.4"
    assert seen_by_function(gateway, "198.51.100.4", {}) == "198.51.100.4"


def test_make_run_gateway_believes_only_a_listed_proxy():
    gateway = Gateway({}, client_ip_header="X-Real-IP", real_ip_from=["10.0.0.0/8"])
    assert seen_by_function(gateway, "10.1.2.3", {"X-Real-IP": "203.0.113.5"}) == "203.0.113.5"
    assert seen_by_function(gateway, "10.1.2.3", {"X-Real-IP": "junk"}) == "10.1.2.3"
    assert seen_by_function(gateway, "198.51.100.4", SPOOFED) == "198.51.100.4"
