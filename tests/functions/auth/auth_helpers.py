"""Helpers of the auth function tests (a uniquely named module: `conftest` is ambiguous)."""

from __future__ import annotations

from typing import Any

ADMIN = ("admin", "admin-password-123")  # from tests/conftest.py BASE_ENV
BASE = "/api/v1/auth"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client, username: str, password: str, *, ip: str = "127.0.0.1"):
    return client.post(
        f"{BASE}/token",
        data={"grant_type": "password", "username": username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def create_user(client, admin_token: str, username: str, role: str,
                password: str | None = "a-good-password-1") -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "role": role}
    if password is not None:
        body["password"] = password
    response = client.post(f"{BASE}/users", json=body, headers=bearer(admin_token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def token_for(client, username: str, password: str = "a-good-password-1") -> str:
    response = login(client, username, password)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def user_id(client, admin_token: str, username: str) -> str:
    listing = client.get(f"{BASE}/users", query_string={"q": username},
                         headers=bearer(admin_token)).get_json()
    return next(u["id"] for u in listing["items"] if u["username"] == username)
