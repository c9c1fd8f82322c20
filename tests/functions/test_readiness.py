"""/readyz (issue 16, item 8): unauthenticated, so its verdict is computed at most once every
few seconds per process (no broker connection per request), and strangers get the status only;
the details (error texts name internal hosts) go to the logs and to signed-in staff. The same
for a function container's app and for the `make run` gateway."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import functions_framework
import pytest
from werkzeug.test import Client

from call_downloader import health
from call_downloader.server.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))  # calls_helpers
from calls_helpers import make_user  # noqa: E402

SECRET_HOST = "rabbitmq-0.internal.corp"


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Count the readiness computations (each opens a RabbitMQ connection)."""
    seen: list[int] = []
    real = health.readiness

    def counting() -> dict[str, str]:
        seen.append(1)
        return real()

    monkeypatch.setattr(health, "readiness", counting)
    return seen


@pytest.fixture
def broker_down(monkeypatch) -> None:
    def unreachable() -> None:
        raise ConnectionError(f"cannot connect to {SECRET_HOST}:5672")

    monkeypatch.setattr(health, "_rabbitmq", unreachable)


def function_client():
    app = functions_framework.create_app("calls", str(ROOT / "functions/calls/main.py"))
    return app.test_client()


def test_the_verdict_is_computed_once_for_many_requests(database_url, db, counted):
    client = function_client()
    answers = [client.get("/readyz") for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert len(counted) == 1


def test_strangers_get_the_status_only_and_staff_the_details(database_url, db, counted):
    client = function_client()
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 200 and anonymous.get_json() == {"status": "ok"}
    bad = client.get("/readyz", headers={"Authorization": "Bearer not-a-token"})
    assert bad.get_json() == {"status": "ok"}
    source = make_user("pbx", "source")
    assert client.get("/readyz", headers=source.headers).get_json() == {"status": "ok"}
    staff = make_user("watcher", "viewer")
    detailed = client.get("/readyz", headers=staff.headers).get_json()
    assert detailed == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "rabbitmq": "ok"},
    }


def test_a_failure_names_no_internal_host_to_strangers(database_url, db, broker_down, caplog):
    caplog.set_level(logging.WARNING, logger="call_downloader.health")
    client = function_client()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json() == {"status": "unavailable"}
    assert SECRET_HOST in caplog.text  # the details are in the logs
    staff = make_user("watcher", "operator")
    detailed = client.get("/readyz", headers=staff.headers).get_json()
    assert SECRET_HOST in detailed["checks"]["rabbitmq"]


def test_make_run_gateway_answers_the_same(database_url, db, counted, broker_down):
    extra = {"dispatcher_processes": lambda: "error: a dispatcher process is restarting"}
    gateway = Client(Gateway({}, checks=extra))
    answers = [gateway.get("/readyz") for _ in range(5)]
    assert {a.status_code for a in answers} == {503}
    assert answers[0].get_json() == {"status": "unavailable"}
    assert len(counted) == 1
    staff = make_user("watcher", "admin")
    detailed = gateway.get("/readyz", headers=staff.headers).get_json()
    assert detailed["checks"]["dispatcher_processes"].startswith("error:")
    assert SECRET_HOST in detailed["checks"]["rabbitmq"]
