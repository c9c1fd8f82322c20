"""Every function answers /healthz, /readyz and /metrics (the probes of compose and Knative)."""

from __future__ import annotations

from pathlib import Path

import functions_framework
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "ingest": "ingest",
    "auth": "auth",
    "calls": "calls",
    "analyze-duration": "analyze_duration",
    "call-ai": "call_ai",
    "deliver": "deliver",
}


def test_every_function_folder_is_covered():
    folders = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    assert folders == set(FUNCTIONS)


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_operational_routes(folder, database_url, db):
    app = functions_framework.create_app(
        FUNCTIONS[folder], str(ROOT / "functions" / folder / "main.py")
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == {"status": "ok"}  # the details: tests/functions/test_readiness
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    list(text_string_to_metric_families(metrics.get_data(as_text=True)))  # parses


def test_readyz_reports_a_database_behind_the_code(database_url, db, monkeypatch):
    from call_downloader import health

    monkeypatch.setattr(health, "_head", "9999_future")
    checks = health.readiness()
    assert checks["database"].startswith("error:")
    assert "9999_future" in checks["database"]


def test_cloud_event_function_still_takes_events_on_post(database_url, db):
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    app = functions_framework.create_app(
        "analyze_duration", str(ROOT / "functions/analyze-duration/main.py")
    )
    event = CloudEvent(
        {
            "type": "dev.calldownloader.call.received.v1",
            "source": "/test",
            "subject": "00000000-0000-0000-0000-000000000001",
        },
        {"call_id": "00000000-0000-0000-0000-000000000001"},
    )
    headers, body = to_binary(event)
    # An unknown call is acknowledged (nothing to do), not an error.
    assert app.test_client().post("/", headers=headers, data=body).status_code == 200
