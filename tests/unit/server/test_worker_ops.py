"""The relay's and dispatchers' ops port (`--health-port`): /healthz follows the worker's
threads, /metrics serves its metrics (what Compose and the chart probe and scrape)."""

from __future__ import annotations

from werkzeug.test import Client

from call_downloader.server.ops import worker_ops_app


def test_healthz_follows_the_worker_and_metrics_are_served() -> None:
    alive = [True]
    client = Client(worker_ops_app(lambda: alive[0]))
    assert client.get("/healthz").status_code == 200
    alive[0] = False
    stalled = client.get("/healthz")
    assert stalled.status_code == 503 and stalled.json["status"] == "stalled"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    assert client.get("/elsewhere").status_code == 404
