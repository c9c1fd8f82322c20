"""GET /api/v1/stats: per-hour counts, stage latencies, audio minutes, failures, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from calls_helpers import BASE, INJECTIONS, make_call, make_delivery, make_destination


def test_dashboard_numbers(client, people):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    src = people["src"]
    make_call(
        src,
        received_at=hour - timedelta(hours=2) + timedelta(minutes=10),
        duration=60,
        stage_seconds=(1, 3, 1),
    )
    make_call(
        src,
        received_at=hour - timedelta(hours=2) + timedelta(minutes=20),
        duration=120,
        stage_seconds=(3, 5, 3),
    )
    failed = make_call(
        src,
        status="failed",
        error=("call-ai", "ai_rejected"),
        received_at=hour - timedelta(hours=1) + timedelta(minutes=5),
    )
    make_call(
        src,
        status="failed",
        error=("call-ai", "ai_rejected"),
        received_at=hour - timedelta(hours=1) + timedelta(minutes=6),
    )
    make_call(
        src,
        status="failed",
        error=("analyze-duration", "unreadable_audio"),
        received_at=hour + timedelta(seconds=1),
    )
    make_call(src, received_at=hour - timedelta(hours=40))  # outside a 24 h window
    make_delivery(failed, make_destination("crm"))

    r = client.get(f"{BASE}/stats", query_string={"hours": 24}, headers=people["viewer"].headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    per_hour = {row["hour"]: row["counts"] for row in body["calls_per_hour"]}
    assert len(per_hour) == 24
    assert per_hour[(hour - timedelta(hours=2)).isoformat()]["delivered"] == 2
    assert per_hour[(hour - timedelta(hours=1)).isoformat()]["failed"] == 2
    assert per_hour[hour.isoformat()]["failed"] == 1
    assert body["totals"]["delivered"] == 2 and body["totals"]["failed"] == 3

    lat = body["latencies"]
    # failed calls were analysed (1 s each) before they failed
    assert lat["analyze"]["count"] == 5 and lat["analyze"]["mean"] == pytest.approx(7 / 5)
    assert lat["ai"]["max"] == pytest.approx(5.0) and lat["ai"]["p50"] == pytest.approx(4.0)
    assert lat["total"]["mean"] == pytest.approx((5 + 11) / 2)
    assert body["audio_minutes"] == pytest.approx(3.0) and body["audio_calls"] == 2

    reasons = {(f["stage"], f["reason"]): f["count"] for f in body["failures"]}
    assert reasons == {("call-ai", "ai_rejected"): 2, ("analyze-duration", "unreadable_audio"): 1}
    assert body["failures"][0]["reason"] == "ai_rejected"  # most frequent first
    assert body["dead_letters"]["total"] == 1
    assert body["dead_letters"]["by_destination"][0]["destination"] == "crm"


def test_window_by_dates(client, people):
    now = datetime.now(UTC)
    make_call(people["src"], received_at=now - timedelta(days=3))
    since = (now - timedelta(days=4)).isoformat()
    until = (now - timedelta(days=2)).isoformat()
    body = client.get(
        f"{BASE}/stats",
        query_string={"since": since, "until": until},
        headers=people["admin"].headers,
    ).get_json()
    assert body["totals"]["delivered"] == 1
    assert len(body["calls_per_hour"]) in (48, 49)


@pytest.mark.parametrize(
    "query",
    [
        {"hours": 0},
        {"hours": 10000},
        {"hours": "x"},
        {"since": "2026-01-10", "until": "2026-01-01"},
        {"since": "2020-01-01", "until": "2026-01-01"},
        {"hours": 5, "since": "2026-01-01"},
        {"bucket": "day"},
    ],
)
def test_bad_windows(client, people, query):
    r = client.get(f"{BASE}/stats", query_string=query, headers=people["admin"].headers)
    assert r.status_code == 400, r.get_json()


def test_roles_and_injections(client, people):
    assert client.get(f"{BASE}/stats", headers=people["src"].headers).status_code == 403
    assert client.get(f"{BASE}/stats").status_code == 401
    for param in ("hours", "since", "until"):
        for value in INJECTIONS:
            r = client.get(
                f"{BASE}/stats", query_string={param: value}, headers=people["admin"].headers
            )
            assert r.status_code < 500, (param, value)


def test_empty_database(client, people):
    body = client.get(f"{BASE}/stats", headers=people["viewer"].headers).get_json()
    assert body["totals"] == dict.fromkeys(body["totals"], 0)
    assert body["latencies"]["total"] == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p95": None,
        "max": None,
    }
    assert (
        body["failures"] == [] and body["dead_letters"]["total"] == 0 and body["audio_minutes"] == 0
    )
