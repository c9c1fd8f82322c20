"""Passwords, keys and tokens never show up in logs, and not in answers after creation."""

from __future__ import annotations

import logging

from auth_helpers import ADMIN, BASE, bearer, create_user, login


def test_no_secret_in_logs_or_later_answers(client, admin_token, caplog):
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = [ADMIN[1], admin_token]
    answers: list[str] = []

    def call(method, path, **kwargs):
        response = getattr(client, method)(path, **kwargs)
        return response

    wrong = "wrong-password-secret-1"
    call("post", f"{BASE}/token", data={"username": "admin", "password": wrong})
    call("post", f"{BASE}/token", data={"username": "nobody", "password": wrong})
    secrets_seen.append(wrong)

    pair = login(client, *ADMIN).get_json()
    secrets_seen += [pair["access_token"], pair["refresh_token"]]
    rotated = call("post", f"{BASE}/refresh", json={"refresh_token": pair["refresh_token"]})
    secrets_seen += [rotated.get_json()["access_token"], rotated.get_json()["refresh_token"]]
    call("post", f"{BASE}/refresh", json={"refresh_token": pair["refresh_token"]})  # reuse

    create_user(client, admin_token, "secretive", "operator", password="operator-secret-77")
    secrets_seen.append("operator-secret-77")
    uid = next(u["id"] for u in client.get(f"{BASE}/users", headers=bearer(admin_token))
               .get_json()["items"] if u["username"] == "secretive")
    call("post", f"{BASE}/users/{uid}/password", json={"password": "reset-secret-88"},
         headers=bearer(admin_token))
    call("post", f"{BASE}/users/{uid}/password", json={"password": "short"},
         headers=bearer(admin_token))
    call("post", f"{BASE}/users", json={"username": "weak", "role": "viewer",
                                        "password": "weak-" + "z" * 80},
         headers=bearer(admin_token))
    secrets_seen += ["reset-secret-88", "weak-" + "z" * 80]

    source = create_user(client, admin_token, "pbx-secret", "source", password=None)
    key = client.post(f"{BASE}/api-keys", json={"user_id": source["id"]},
                      headers=bearer(admin_token)).get_json()["key"]
    secrets_seen.append(key)
    call("get", f"{BASE}/me", headers={"X-API-Key": key})
    call("get", f"{BASE}/me", headers={"X-API-Key": key[:-1] + "Z"})
    call("get", f"{BASE}/me", headers=bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."))

    # Every answer an admin can read afterwards.
    for path in ("/users", "/api-keys", "/audit?limit=200", "/me"):
        response = client.get(f"{BASE}{path}", headers=bearer(admin_token))
        assert response.status_code == 200
        answers.append(response.get_data(as_text=True))
    answers.append(client.get(f"{BASE}/users/{uid}", headers=bearer(admin_token))
                   .get_data(as_text=True))

    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets_seen:
        assert secret not in logs
        for answer in answers:
            assert secret not in answer
    for answer in answers:
        assert "$2b$" not in answer  # no bcrypt hash
        assert "key_hash" not in answer and "password_hash" not in answer
