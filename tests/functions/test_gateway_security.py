"""The `make run` gateway (issue 16, item 9): the same security headers as the Nginx gateway on
every answer, and /metrics not public once it listens beyond loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from call_downloader.server.gateway import SECURITY_HEADERS, Gateway, build_gateway

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))  # calls_helpers
from calls_helpers import make_user  # noqa: E402


def metrics(environ, start_response):
    return Response("calldl_up 1\n")(environ, start_response)


def api(environ, start_response):
    return Response('{"ok": true}', content_type="application/json")(environ, start_response)


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/v1/calls", "/metrics", "/calls/1"])
def test_every_answer_carries_the_security_headers(path):
    client = Client(Gateway({"calls": api}, extra={"/metrics": metrics}))
    response = client.get(path)
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name) == value, (path, name)


def test_a_header_the_function_set_is_kept():
    def framed(environ, start_response):
        return Response("x", headers={"X-Frame-Options": "SAMEORIGIN"})(environ, start_response)

    response = Client(Gateway({"calls": framed})).get("/api/v1/calls")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]


def test_metrics_beyond_loopback_are_for_this_machine_and_staff(db):
    client = Client(Gateway({}, extra={"/metrics": metrics}, metrics_open_to_all=False))
    stranger = client.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert stranger.status_code == 401 and b"calldl_up" not in stranger.data
    spoofed = client.get(
        "/metrics", headers={"X-Real-IP": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"},
        environ_base={"REMOTE_ADDR": "198.51.100.4"},
    )  # fmt: skip
    assert spoofed.status_code == 401
    source = make_user("pbx", "source")
    denied = client.get("/metrics", headers=source.headers, environ_base={"REMOTE_ADDR": "1.2.3.4"})
    assert denied.status_code == 403
    staff = make_user("watcher", "viewer")
    seen = client.get("/metrics", headers=staff.headers, environ_base={"REMOTE_ADDR": "1.2.3.4"})
    assert seen.status_code == 200 and b"calldl_up" in seen.data
    local = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert local.status_code == 200 and b"calldl_up" in local.data


@pytest.mark.parametrize(
    ("host", "open_to_all"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("", False),
     ("192.168.1.10", False), ("::", False)],
)  # fmt: skip
def test_make_run_decides_from_where_it_listens(host, open_to_all):
    assert build_gateway(host=host).metrics_open_to_all is open_to_all
