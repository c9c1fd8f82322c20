"""GET /api/v1/calls and /api/v1/calls/<id>: filters, search, sort, cursor, counts, roles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from calls_helpers import BASE, INJECTIONS, make_call


def _all_pages(client, headers, **query):
    seen, cursor = [], None
    for _ in range(100):
        q = dict(query, **({"cursor": cursor} if cursor else {}))
        r = client.get(f"{BASE}/calls", query_string=q, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return seen
    raise AssertionError("pagination did not end")


def test_list_filters_search_and_counts(client, people):
    now = datetime.now(UTC)
    src, src2 = people["src"], people["src2"]
    a = make_call(
        src, external_id="A-100", metadata={"agent": "Alice"}, received_at=now - timedelta(hours=3)
    )
    b = make_call(
        src,
        external_id="B-200",
        status="failed",
        error=("call-ai", "ai_rejected"),
        received_at=now - timedelta(hours=2),
    )
    c = make_call(
        src2,
        external_id="C-300",
        metadata={"agent": "Bob", "queue": "sales"},
        status="processing",
        received_at=now - timedelta(hours=1),
    )
    h = people["admin"].headers

    body = client.get(f"{BASE}/calls", headers=h).get_json()
    assert [i["id"] for i in body["items"]] == [str(c), str(b), str(a)]  # newest first
    assert body["counts"]["delivered"] == 1 and body["counts"]["failed"] == 1
    assert body["counts"]["processing"] == 1 and body["total"] == 3
    assert body["items"][0]["source"] == "src2"

    def ids(**q):
        r = client.get(f"{BASE}/calls", query_string=q, headers=h)
        assert r.status_code == 200, r.get_json()
        return {i["id"] for i in r.get_json()["items"]}

    assert ids(status="failed") == {str(b)}
    assert ids(status="failed,delivered") == {str(a), str(b)}
    assert ids(source="src2") == {str(c)}
    assert ids(source=str(src.id)) == {str(a), str(b)}
    assert ids(source="nobody") == set()
    assert ids(q="b-2") == {str(b)}  # external id, case-insensitive
    assert ids(q="alice") == {str(a)}  # metadata value
    assert ids(q="sales") == {str(c)}
    assert ids(q=str(a)) == {str(a)}  # a call id
    assert ids(q="%") == set()  # wildcards are literal
    assert ids(since=(now - timedelta(hours=2, minutes=30)).isoformat()) == {str(b), str(c)}
    assert ids(until=(now - timedelta(hours=2, minutes=30)).isoformat().replace("+00:00", "Z")) == {
        str(a)
    }
    # counts ignore the status filter (they label the status tabs) but honour the others
    r = client.get(f"{BASE}/calls", query_string={"status": "failed", "source": "src"}, headers=h)
    assert r.get_json()["counts"]["delivered"] == 1 and r.get_json()["total"] == 1


@pytest.mark.parametrize(
    "sort",
    [
        "-received_at",
        "received_at",
        "duration_seconds",
        "-size_bytes",
        "external_id",
        "-status",
        "updated_at",
    ],
)
def test_cursor_pagination_visits_every_call_once_in_order(client, people, sort):
    now = datetime.now(UTC)
    made = set()
    for i in range(13):
        made.add(
            str(
                make_call(
                    people["src"],
                    external_id=None if i % 4 == 0 else f"ext-{(i * 7) % 13:02d}",
                    received_at=now - timedelta(minutes=i % 3),  # ties on purpose
                    duration=None if i % 5 == 0 else float(i % 4),
                    audio=b"x" * (100 + i % 3),
                    status=["delivered", "failed", "received"][i % 3],
                )
            )
        )
    items = _all_pages(client, people["viewer"].headers, sort=sort, limit=4)
    got = [i["id"] for i in items]
    assert len(got) == len(set(got)) == 13 and set(got) == made
    field = sort.lstrip("-")
    fill = {"duration_seconds": -1.0, "size_bytes": -1, "external_id": ""}.get(field)
    values = [i[field] if i[field] is not None else fill for i in items]
    assert values == sorted(values, reverse=sort.startswith("-"))


def test_bad_cursors_are_refused(client, people):
    h = people["admin"].headers
    make_call(people["src"])
    make_call(people["src"])
    first = client.get(f"{BASE}/calls", query_string={"limit": 1}, headers=h).get_json()
    cursor = first["next_cursor"]
    assert cursor
    r = client.get(
        f"{BASE}/calls",
        query_string={"limit": 1, "cursor": cursor, "sort": "size_bytes"},
        headers=h,
    )
    assert r.status_code == 400 and "sort" in r.get_json()["error"]["message"]
    for bad in ("x", "W10", "WyItcmVjZWl2ZWRfYXQiLDEsMl0", cursor[:-3] + "AAA"):
        r = client.get(f"{BASE}/calls", query_string={"cursor": bad}, headers=h)
        assert r.status_code == 400, (bad, r.get_json())


@pytest.mark.parametrize(
    "param", ["status", "source", "since", "until", "q", "sort", "cursor", "limit", "counts"]
)
def test_injection_strings_never_give_5xx(client, people, param):
    make_call(people["src"], external_id="keep-me")
    for value in INJECTIONS:
        r = client.get(
            f"{BASE}/calls", query_string={param: value}, headers=people["admin"].headers
        )
        assert r.status_code < 500, (param, value, r.status_code, r.get_data()[:300])
        if r.status_code >= 400:
            assert r.get_json()["error"]["code"]
    # and the data is still there
    body = client.get(f"{BASE}/calls", headers=people["admin"].headers).get_json()
    assert [i["external_id"] for i in body["items"]] == ["keep-me"]


def test_unknown_and_repeated_parameters(client, people):
    h = people["admin"].headers
    assert client.get(f"{BASE}/calls?order=1", headers=h).status_code == 400
    assert client.get(f"{BASE}/calls?status=failed&status=delivered", headers=h).status_code == 400
    assert client.get(f"{BASE}/calls?limit=0", headers=h).status_code == 400
    assert client.get(f"{BASE}/calls?limit=201", headers=h).status_code == 400
    assert client.get(f"{BASE}/calls?status=lost", headers=h).status_code == 400
    r = client.get(f"{BASE}/calls?since=2026-02-01&until=2026-01-01", headers=h)
    assert r.status_code == 400


def test_sources_see_only_their_own_calls(client, people):
    mine = make_call(people["src"], external_id="mine")
    theirs = make_call(people["src2"], external_id="theirs")
    h = people["src"].headers
    body = client.get(f"{BASE}/calls", headers=h).get_json()
    assert [i["id"] for i in body["items"]] == [str(mine)]
    assert sum(body["counts"].values()) == 1
    # asking for another source's calls does not widen the view
    body = client.get(f"{BASE}/calls", query_string={"source": "src2"}, headers=h).get_json()
    assert [i["id"] for i in body["items"]] == [str(mine)]
    assert client.get(f"{BASE}/calls/{mine}", headers=h).status_code == 200
    assert client.get(f"{BASE}/calls/{theirs}", headers=h).status_code == 404
    assert client.get(f"{BASE}/sources", headers=h).status_code == 403


def test_auth_is_required(client, people):
    assert client.get(f"{BASE}/calls").status_code == 401
    r = client.get(f"{BASE}/calls", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_one_call_has_result_timeline_and_versions(client, people):
    cid = make_call(people["src"], external_id="detail", status="delivered")
    body = client.get(f"{BASE}/calls/{cid}", headers=people["viewer"].headers).get_json()
    assert body["id"] == str(cid) and body["status"] == "delivered"
    assert body["result"] == {"transcript": "hello"}
    assert body["source"] == "src"
    assert body["result_versions"][0]["version"] == 1
    for key in ("timeline", "attempts", "deliveries", "sha256", "duration_seconds", "format"):
        assert key in body
    assert (
        client.get(f"{BASE}/calls/{uuid.uuid4()}", headers=people["viewer"].headers).status_code
        == 404
    )
    assert (
        client.get(f"{BASE}/calls/not-a-uuid", headers=people["viewer"].headers).status_code == 404
    )


def test_sources_list_for_staff(client, people):
    make_call(people["admin"])  # an admin who uploaded counts as a source of calls
    body = client.get(f"{BASE}/sources", headers=people["viewer"].headers).get_json()
    assert [s["username"] for s in body["items"]] == ["admin", "src", "src2"]
