"""API keys: created for a source (shown once), listed without secrets, used, revoked."""

from __future__ import annotations

import pytest
from auth_helpers import BASE, bearer, create_user


def _create_key(client, admin_token, user_id=None, name="pbx"):
    body = {"name": name}
    if user_id:
        body["user_id"] = user_id
    return client.post(f"{BASE}/api-keys", json=body, headers=bearer(admin_token))


def test_key_lifecycle(client, admin_token):
    source = create_user(client, admin_token, "pbx-one", "source", password=None)
    response = _create_key(client, admin_token, source["id"], "main pbx")
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    created = response.get_json()
    key = created["key"]
    assert key.startswith("cdk_") and key.startswith(created["prefix"])
    assert created["username"] == "pbx-one" and created["name"] == "main pbx"

    # Use it, by header and as a bearer token.
    me = client.get(f"{BASE}/me", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert me.get_json()["username"] == "pbx-one" and me.get_json()["via"] == "api_key"
    assert client.get(f"{BASE}/me", headers=bearer(key)).status_code == 200
    # A source may read `me` and nothing else here.
    assert client.get(f"{BASE}/users", headers={"X-API-Key": key}).status_code == 403
    assert client.post(f"{BASE}/api-keys", json={}, headers={"X-API-Key": key}).status_code == 403

    listing = client.get(f"{BASE}/api-keys", headers=bearer(admin_token))
    assert listing.status_code == 200
    items = listing.get_json()["items"]
    assert len(items) == 1
    item = items[0]
    assert item["prefix"] == created["prefix"] and item["username"] == "pbx-one"
    assert item["last_used_at"] is not None and item["active"] is True
    assert key not in listing.get_data(as_text=True)
    assert "key_hash" not in item and "key" not in item

    one = client.get(f"{BASE}/api-keys/{created['id']}", headers=bearer(admin_token))
    assert one.status_code == 200 and key not in one.get_data(as_text=True)

    assert client.delete(f"{BASE}/api-keys/{created['id']}",
                         headers=bearer(admin_token)).status_code == 204
    revoked = client.get(f"{BASE}/me", headers={"X-API-Key": key})
    assert revoked.status_code == 401
    assert revoked.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.delete(f"{BASE}/api-keys/{created['id']}",
                         headers=bearer(admin_token)).status_code == 204  # idempotent
    active_only = client.get(f"{BASE}/api-keys", query_string={"include_revoked": "false"},
                             headers=bearer(admin_token)).get_json()
    assert active_only["items"] == []


def test_key_of_deactivated_source_stops_working(client, admin_token):
    source = create_user(client, admin_token, "pbx-two", "source", password=None)
    key = _create_key(client, admin_token, source["id"]).get_json()["key"]
    assert client.get(f"{BASE}/me", headers={"X-API-Key": key}).status_code == 200
    client.patch(f"{BASE}/users/{source['id']}", json={"active": False},
                 headers=bearer(admin_token))
    assert client.get(f"{BASE}/me", headers={"X-API-Key": key}).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(client, admin_token):
    from sqlalchemy import select

    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import ApiKey

    source = create_user(client, admin_token, "pbx-three", "source", password=None)
    created = _create_key(client, admin_token, source["id"]).get_json()
    client.get(f"{BASE}/me", headers={"X-API-Key": created["key"]})
    with unit_of_work() as session:
        first = session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == created["id"]))
    assert first is not None
    for _ in range(3):
        client.get(f"{BASE}/me", headers={"X-API-Key": created["key"]})
    with unit_of_work() as session:
        again = session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == created["id"]))
    assert again == first


def test_admin_may_create_a_key_for_self(client, admin_token):
    response = _create_key(client, admin_token)
    assert response.status_code == 201 and response.get_json()["username"] == "admin"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_keys_only_for_sources(client, admin_token, role):
    other = create_user(client, admin_token, f"not-a-source-{role}", role)
    response = _create_key(client, admin_token, other["id"])
    assert response.status_code == 422


@pytest.mark.parametrize(
    "body,status",
    [
        ({"user_id": "00000000-0000-0000-0000-000000000000"}, 404),
        ({"user_id": "nope"}, 404),
        ({"user_id": 5}, 422),
        ({"name": 5}, 422),
        ({"name": "x" * 201}, 422),
        ({"name": "bad\nname"}, 422),
        ({"secret": "x"}, 422),
    ],
)
def test_create_key_validation(client, admin_token, body, status):
    response = client.post(f"{BASE}/api-keys", json=body, headers=bearer(admin_token))
    assert response.status_code == status


@pytest.mark.parametrize("bad", ["nope", "' OR 1=1", "00000000-0000-0000-0000-000000000000"])
def test_revoke_unknown_key(client, admin_token, bad):
    assert client.delete(f"{BASE}/api-keys/{bad}", headers=bearer(admin_token)).status_code == 404
