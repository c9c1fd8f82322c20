"""Repairs over HTTP: retry, AI re-run, delivery replay, dead letters (list and bulk replay)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from calls_helpers import BASE, INJECTIONS, make_call, make_delivery, make_destination
from sqlalchemy import select

from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import AuditLog, Call, Delivery, OutboxEvent


def _outbox_types(call_id) -> list[str]:
    with unit_of_work() as session:
        return list(
            session.scalars(select(OutboxEvent.type).where(OutboxEvent.subject == str(call_id)))
        )


def _audit(action: str) -> list[AuditLog]:
    with unit_of_work() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_retry_a_failed_call_from_its_stage(client, people):
    cid = make_call(people["src"], status="failed", error=("call-ai", "ai_unavailable"))
    r = client.post(f"{BASE}/calls/{cid}/retry", headers=people["oper"].headers)
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["status"] == "analyzed" and r.get_json()["error"] is None
    assert any(t.endswith("call.analyzed.v1") for t in _outbox_types(cid))
    assert [a.actor for a in _audit("call.retry")] == ["oper"]
    # not failed any more: a second retry is a conflict
    again = client.post(f"{BASE}/calls/{cid}/retry", headers=people["oper"].headers)
    assert again.status_code == 409


@pytest.mark.parametrize("who", ["viewer", "src"])
def test_readers_cannot_repair(client, people, who):
    cid = make_call(people["src"], status="failed", error=("call-ai", "ai_unavailable"))
    assert client.post(f"{BASE}/calls/{cid}/retry", headers=people[who].headers).status_code == 403
    assert (
        client.post(f"{BASE}/calls/{cid}/rerun-ai", headers=people[who].headers).status_code == 403
    )
    with unit_of_work() as session:
        assert session.get(Call, cid).status == "failed"


def test_rerun_ai_on_a_delivered_call(client, people):
    cid = make_call(people["src"], status="delivered")
    r = client.post(f"{BASE}/calls/{cid}/rerun-ai", headers=people["admin"].headers)
    assert r.status_code == 202, r.get_json()
    with unit_of_work() as session:
        call = session.get(Call, cid)
        assert call.ai_run == 2 and call.status == "analyzed"
    assert (
        client.post(f"{BASE}/calls/{cid}/rerun-ai", headers=people["admin"].headers).status_code
        == 409
    )


def test_repairs_of_unknown_things_are_404(client, people):
    h = people["admin"].headers
    assert (
        client.post(
            f"{BASE}/calls/00000000-0000-0000-0000-000000000000/retry", headers=h
        ).status_code
        == 404
    )
    assert client.post(f"{BASE}/calls/nope/retry", headers=h).status_code == 404
    assert client.post(f"{BASE}/deliveries/msg_nope/replay", headers=h).status_code == 404
    assert client.post(f"{BASE}/deliveries/'%20OR%201=1/replay", headers=h).status_code == 404
    r = client.post(
        f"{BASE}/calls/00000000-0000-0000-0000-000000000000/retry", headers=h, json={"surprise": 1}
    )
    assert r.status_code == 422


def test_replay_one_delivery(client, people):
    cid = make_call(
        people["src"],
        status="failed",
        error=("deliver", "delivery_dead_lettered"),
        reached="processed",
    )
    dest = make_destination("crm")
    did = make_delivery(cid, dest)
    r = client.post(f"{BASE}/deliveries/{did}/replay", headers=people["oper"].headers)
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["replayed"] == did and body["call"]["status"] == "processed"
    with unit_of_work() as session:
        d = session.get(Delivery, did)
        assert d.status == "pending" and d.round == 2
    # pending now: replaying it again is a conflict
    assert (
        client.post(f"{BASE}/deliveries/{did}/replay", headers=people["oper"].headers).status_code
        == 409
    )
    assert (
        client.post(f"{BASE}/deliveries/{did}/replay", headers=people["viewer"].headers).status_code
        == 403
    )


def test_dead_letters_list_and_bulk_replay_by_destination_and_window(client, people):
    now = datetime.now(UTC)
    crm, bi = make_destination("crm"), make_destination("bi")
    old_crm = make_delivery(
        make_call(people["src"], status="failed"), crm, updated_at=now - timedelta(days=2)
    )
    new_crm = make_delivery(
        make_call(people["src"], status="failed"), crm, updated_at=now - timedelta(hours=1)
    )
    new_bi = make_delivery(
        make_call(people["src"], status="failed"), bi, updated_at=now - timedelta(hours=1)
    )
    ok = make_delivery(make_call(people["src"]), bi, status="delivered")

    listing = client.get(f"{BASE}/dead-letters", headers=people["viewer"].headers).get_json()
    assert listing["total"] == 3
    assert [i["webhook_id"] for i in listing["items"]][-1] == old_crm  # newest first
    assert ok not in {i["webhook_id"] for i in listing["items"]}
    only_crm = client.get(
        f"{BASE}/dead-letters",
        query_string={"destination_id": str(crm)},
        headers=people["viewer"].headers,
    ).get_json()
    assert {i["webhook_id"] for i in only_crm["items"]} == {old_crm, new_crm}
    page = client.get(
        f"{BASE}/dead-letters", query_string={"limit": 2}, headers=people["viewer"].headers
    ).get_json()
    rest = client.get(
        f"{BASE}/dead-letters",
        query_string={"limit": 2, "cursor": page["next_cursor"]},
        headers=people["viewer"].headers,
    ).get_json()
    assert len(page["items"]) == 2 and [i["webhook_id"] for i in rest["items"]] == [old_crm]

    assert (
        client.post(
            f"{BASE}/dead-letters/replay", json={}, headers=people["viewer"].headers
        ).status_code
        == 403
    )
    r = client.post(
        f"{BASE}/dead-letters/replay",
        json={"destination_id": str(crm), "since": (now - timedelta(days=1)).isoformat()},
        headers=people["oper"].headers,
    )
    assert r.status_code == 202 and r.get_json() == {"replayed": 1}
    with unit_of_work() as session:
        assert session.get(Delivery, new_crm).status == "pending"
        assert session.get(Delivery, old_crm).status == "dead"
        assert session.get(Delivery, new_bi).status == "dead"
    entry = _audit("dead_letters.replay")[0]
    assert entry.actor == "oper" and entry.detail["replayed"] == 1
    # everything left
    r = client.post(f"{BASE}/dead-letters/replay", headers=people["admin"].headers)
    assert r.get_json() == {"replayed": 2}


@pytest.mark.parametrize(
    "body",
    [
        {"since": "yesterday"},
        {"until": 5},
        {"destination_id": "'; DROP TABLE deliveries; --"},
        {"limit": 0},
        {"limit": "10"},
        {"limit": True},
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"extra": 1},
        [1, 2],
    ],
)
def test_bulk_replay_validates_its_body(client, people, body):
    r = client.post(f"{BASE}/dead-letters/replay", json=body, headers=people["admin"].headers)
    assert 400 <= r.status_code < 500, r.get_json()


def test_bulk_replay_unknown_destination_is_404(client, people):
    r = client.post(
        f"{BASE}/dead-letters/replay",
        json={"destination_id": "00000000-0000-0000-0000-000000000001"},
        headers=people["admin"].headers,
    )
    assert r.status_code == 404


def test_bulk_replay_refuses_non_json(client, people):
    r = client.post(
        f"{BASE}/dead-letters/replay",
        data="since=1",
        headers={**people["admin"].headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    r = client.post(
        f"{BASE}/dead-letters/replay",
        data="{not json",
        headers={**people["admin"].headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400


@pytest.mark.parametrize("param", ["since", "until", "destination_id", "cursor", "limit"])
def test_dead_letter_list_injections(client, people, param):
    for value in INJECTIONS:
        r = client.get(
            f"{BASE}/dead-letters", query_string={param: value}, headers=people["admin"].headers
        )
        assert r.status_code < 500, (param, value, r.get_data()[:200])
