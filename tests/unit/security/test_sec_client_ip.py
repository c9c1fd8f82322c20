from __future__ import annotations

from types import SimpleNamespace

import flask
import pytest

from call_downloader.security import identity


def request_with(remote: str, xff: str | None = None) -> flask.Request:
    app = flask.Flask("t")
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    ctx = app.test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": remote})
    ctx.push()
    req = flask.request._get_current_object()
    ctx.pop()
    return req


def test_forwarded_for_is_ignored_by_default():
    assert identity.client_ip(request_with("10.0.0.7", "1.2.3.4")) == "10.0.0.7"


@pytest.mark.parametrize(
    "hops,xff,expected",
    [
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # a client-supplied entry is not trusted
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "203.0.113.9", "10.0.0.7"),  # fewer entries than hops: the peer address
        (1, "not-an-ip", "unknown"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_trusted_proxy_hops(monkeypatch, hops, xff, expected):
    monkeypatch.setattr(identity, "get_settings", lambda: SimpleNamespace(trusted_proxy_hops=hops))
    assert identity.client_ip(request_with("10.0.0.7", xff)) == expected
