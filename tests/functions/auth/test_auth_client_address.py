"""Behind the `make run` gateway (issue 16, item 1): the client's address is the one the
gateway puts in X-Real-IP, so headers a client sends buy it no new attempts, and the audit log
records the real address. Failed-login names that are no user are never logged in clear."""

from __future__ import annotations

import logging

from auth_helpers import ADMIN, BASE, bearer, login
from werkzeug.test import Client

from call_downloader.config import reset_settings
from call_downloader.server.gateway import Gateway

CLIENT = "198.51.100.23"


def through_gateway(client, monkeypatch) -> Client:
    monkeypatch.setenv("CLIENT_IP_HEADER", "X-Real-IP")  # as `make run` sets it
    reset_settings()
    return Client(Gateway({"auth": client.application}, client_ip_header="X-Real-IP"))


def test_spoofed_addresses_buy_no_attempts_and_the_audit_has_the_real_one(
    client, admin_token, monkeypatch
):
    gateway = through_gateway(client, monkeypatch)
    statuses = []
    for i in range(6):
        response = gateway.post(
            f"{BASE}/token",
            data={"username": "admin", "password": f"wrong-password-{i}"},
            headers={"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.0.1.{i}"},
            environ_base={"REMOTE_ADDR": CLIENT},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 3 + [429] * 3
    ok = gateway.post(
        f"{BASE}/token", data={"username": ADMIN[0], "password": ADMIN[1]},
        environ_base={"REMOTE_ADDR": "198.51.100.24"},
    )  # fmt: skip
    assert ok.status_code == 200, ok.get_json()
    entries = client.get(
        f"{BASE}/audit", query_string={"action": "auth.login.failure"}, headers=bearer(admin_token)
    ).get_json()["items"]
    assert [e["client_ip"] for e in entries] == [CLIENT] * 3


def test_a_password_typed_as_username_is_not_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="call_downloader.security.login")
    typed = "correct-horse-battery-staple"
    assert login(client, typed, "whatever-else-1").status_code == 401
    assert login(client, "admin", "wrong-password-xx").status_code == 401
    messages = [r.getMessage() for r in caplog.records]
    assert not any(typed in m for m in messages), messages
    assert any("unknown:" in m for m in messages) and any("'admin'" in m for m in messages)
