"""Embedded mode (issue 9): data survives a restart; interrupted calls resume and arrive once."""

from __future__ import annotations

import signal

import httpx
import pytest
from audio_fixtures import CORE_KINDS, make_fixture
from e2e_support import start_server, stop_server, wait_for

pytestmark = pytest.mark.e2e


def post(server, path, external_id):
    return server.upload(path, external_id)


def test_killed_mid_flight_resumes_after_restart_and_delivers_once(
    tmp_path, database_url, db, fake_ai, receiver
):
    fake_ai.fail_rate = 1.0  # the AI is down: calls wait in their retry schedule
    srv = start_server(
        tmp_path,
        database_url,
        fake_ai,
        receiver,
        "embedded",
        AI_RETRY_DELAYS="1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    )
    ids = [post(srv, make_fixture(kind), f"emb-{kind}") for kind in CORE_KINDS[:6]]
    wait_for(lambda: fake_ai.failures >= len(ids))
    srv.proc.send_signal(signal.SIGKILL)  # no clean shutdown: work is mid-flight
    srv.proc.wait(10)

    fake_ai.fail_rate = 0.0
    tmp, ai, rec, mode, extra = srv.start_args
    again = start_server(tmp, database_url, ai, rec, mode, **extra)
    try:
        # The same SQLite file: the calls are still there and finish after the restart.
        for call_id in ids:
            call = wait_for(
                lambda c=call_id: again.call(c)["status"] == "delivered" and again.call(c),
                timeout=120,
            )
            assert call["external_id"].startswith("emb-")
        for call_id in ids:
            assert len(receiver.deliveries[call_id]) == 1
        # A duplicate post after the restart is recognised: the data survived.
        r = httpx.post(
            f"{again.url}/api/v1/calls",
            headers=again.headers(),
            files={"file": ("a", make_fixture(CORE_KINDS[0]).read_bytes())},
            data={"external_id": f"emb-{CORE_KINDS[0]}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["id"] == ids[0]
    finally:
        stop_server(again)


def test_the_dashboard_numbers_in_embedded_mode(tmp_path, database_url, db, fake_ai, receiver):
    # SQLite has neither date_trunc nor percentile_cont: /api/v1/stats computes them its way.
    srv = start_server(tmp_path, database_url, fake_ai, receiver, "embedded")
    try:
        ids = [post(srv, make_fixture(kind), f"stats-{kind}") for kind in CORE_KINDS[:3]]
        for call_id in ids:
            wait_for(lambda c=call_id: srv.call(c)["status"] == "delivered", timeout=120)
        answer = httpx.get(f"{srv.url}/api/v1/stats", headers=srv.headers(), timeout=30)
        assert answer.status_code == 200, answer.text
        stats = answer.json()
        assert stats["totals"]["delivered"] == 3
        assert sum(h["counts"]["delivered"] for h in stats["calls_per_hour"]) == 3
        total = stats["latencies"]["total"]
        assert total["count"] == 3
        assert 0 <= total["p50"] <= total["p95"] <= total["max"]
        assert total["mean"] > 0
    finally:
        stop_server(srv)
