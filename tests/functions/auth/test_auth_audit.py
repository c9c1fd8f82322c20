"""The audit log records who did what from where; admins read it paged; bad parameters get 4xx."""

from __future__ import annotations

import pytest
from auth_helpers import ADMIN, BASE, bearer, create_user, login


def _all_entries(client, admin_token, **params):
    return client.get(f"{BASE}/audit", query_string={"limit": 200, **params},
                      headers=bearer(admin_token)).get_json()["items"]


def test_audit_records_logins_and_changes(client, admin_token):
    login(client, "admin", "wrong-password-zz", ip="127.0.0.5")
    login(client, "ghost-user", "wrong-password-zz", ip="127.0.0.6")
    viewer = create_user(client, admin_token, "audited", "viewer")
    client.patch(f"{BASE}/users/{viewer['id']}", json={"role": "operator"},
                 headers=bearer(admin_token))
    source = create_user(client, admin_token, "audited-pbx", "source", password=None)
    key = client.post(f"{BASE}/api-keys", json={"user_id": source["id"], "name": "k"},
                      headers=bearer(admin_token)).get_json()
    client.delete(f"{BASE}/api-keys/{key['id']}", headers=bearer(admin_token))
    client.post(f"{BASE}/users/{viewer['id']}/password", json={"password": "new-password-99"},
                headers=bearer(admin_token))
    client.delete(f"{BASE}/users/{viewer['id']}", headers=bearer(admin_token))

    entries = _all_entries(client, admin_token)
    actions = [e["action"] for e in entries]
    for expected in ["auth.login.success", "auth.login.failure", "user.create",
                     "user.role_change", "user.update", "api_key.create", "api_key.revoke",
                     "user.password_reset", "user.delete"]:
        assert expected in actions, expected
    failures = [e for e in entries if e["action"] == "auth.login.failure"]
    assert {(e["actor"], e["client_ip"]) for e in failures} == {
        ("admin", "127.0.0.5"), (None, "127.0.0.6")}
    # A name that is no user may be a password typed in the wrong field: never kept in clear.
    ghost = next(e for e in failures if e["client_ip"] == "127.0.0.6")
    assert ghost["target"].startswith("user:unknown:") and "ghost-user" not in str(entries)
    role_change = next(e for e in entries if e["action"] == "user.role_change")
    assert role_change["actor"] == "admin" and role_change["target"] == "user:audited"
    assert role_change["detail"]["from"] == "viewer" and role_change["detail"]["to"] == "operator"
    assert all(e["at"] for e in entries)
    # No secret anywhere in the log.
    text = str(entries)
    for secret in ("wrong-password-zz", "new-password-99", "a-good-password-1", key["key"],
                   ADMIN[1], admin_token):
        assert secret not in text


def test_audit_paging_and_filters(client, admin_token):
    for i in range(5):
        create_user(client, admin_token, f"paged{i}", "viewer")
    first = client.get(f"{BASE}/audit", query_string={"limit": 2, "action": "user.create"},
                       headers=bearer(admin_token)).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    seen = [e["target"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"{BASE}/audit",
                          query_string={"limit": 2, "action": "user.create", "cursor": cursor},
                          headers=bearer(admin_token)).get_json()
        seen += [e["target"] for e in page["items"]]
        cursor = page["next_cursor"]
    # newest first, each exactly once (the bootstrap admin's creation included)
    assert seen == [f"user:paged{i}" for i in range(4, -1, -1)] + ["user:admin"]
    family = _all_entries(client, admin_token, action="auth.")
    assert family and all(e["action"].startswith("auth.") for e in family)
    by_actor = _all_entries(client, admin_token, actor="system")
    assert [e["action"] for e in by_actor] == ["user.create"]
    future = _all_entries(client, admin_token, since="2999-01-01T00:00:00Z")
    assert future == []


INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE users;--",
    "1 UNION SELECT password_hash FROM users",
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "\u0000",
    "%00",
    "<script>alert(1)</script>",
    "{\"$gt\": \"\"}",
    "username; DELETE",
    "a" * 500,
    "true OR 1=1",
    "admin' --",
    "admin\" OR \"\"=\"",
    "1) OR (1=1",
    "*",
    "%",
    "user:admin' OR '1'='1",
]
# Paging and numbers: what an integer parameter must refuse.
NUMERIC = ["-1", "99999999999999999999999", "1e9", "0x10", "NaN", "1.5", " 1", "1 ",
           "+1", "１"]
NUMERIC_PARAMS = {"limit", "offset", "cursor"}

PARAMS = {
    "/audit": ["limit", "cursor", "action", "actor", "target", "since", "until", "sort"],
    "/users": ["limit", "offset", "role", "active", "q", "sort", "filter"],
    "/api-keys": ["user_id", "include_revoked", "limit"],
}


@pytest.mark.parametrize("path", sorted(PARAMS))
def test_injection_attempts_in_query_parameters_get_4xx(client, admin_token, path):
    for param in PARAMS[path]:
        values = INJECTIONS + (NUMERIC if param in NUMERIC_PARAMS else [])
        for value in values:
            response = client.get(f"{BASE}{path}", query_string={param: value},
                                  headers=bearer(admin_token))
            assert 400 <= response.status_code < 500, (path, param, value, response.status_code)
            assert response.get_json()["error"]["message"]
    # repeated parameters are refused too
    response = client.get(f"{BASE}{path}?limit=1&limit=2", headers=bearer(admin_token))
    assert response.status_code == 400


def test_valid_parameters_still_work(client, admin_token):
    for path, params in [("/audit", {"limit": "10", "action": "user.create"}),
                         ("/audit", {"target": "destination:Main CRM 2", "actor": "admin",
                                     "since": "2020-01-01T00:00:00+02:00", "until": "2999-01-01"}),
                         ("/audit", {"target": "dead_letters", "action": "call.rerun_ai"}),
                         ("/users", {"limit": "10", "offset": "0", "role": "admin",
                                     "active": "true", "q": "adm", "sort": "-created_at"}),
                         ("/api-keys", {"include_revoked": "true"})]:
        response = client.get(f"{BASE}{path}", query_string=params, headers=bearer(admin_token))
        assert response.status_code == 200, (path, response.get_json())
