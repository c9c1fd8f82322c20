"""Users CRUD, roles (401/403), password reset and change."""

from __future__ import annotations

import pytest
from auth_helpers import ADMIN, BASE, bearer, create_user, login, token_for, user_id


def test_create_user_answers_201_with_location(client, admin_token):
    response = client.post(f"{BASE}/users", json={"username": "Olga.Op", "role": "operator",
                                                  "password": "operator-pass-1"},
                           headers=bearer(admin_token))
    assert response.status_code == 201
    body = response.get_json()
    assert body["username"] == "olga.op" and body["role"] == "operator" and body["active"]
    assert response.headers["Location"] == f"{BASE}/users/{body['id']}"
    assert "password" not in body and "password_hash" not in body
    got = client.get(response.headers["Location"], headers=bearer(admin_token))
    assert got.status_code == 200 and got.get_json() == body
    assert token_for(client, "olga.op", "operator-pass-1")


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"username": "admin", "role": "viewer", "password": "x" * 12}, 409, "conflict"),
        ({"username": "ADMIN", "role": "viewer", "password": "x" * 12}, 409, "conflict"),
        ({"username": "newbie", "role": "viewer", "password": "short"}, 422, "invalid_password"),
        ({"username": "newbie", "role": "viewer", "password": "p" * 73}, 422, "invalid_password"),
        ({"username": "newbie", "role": "viewer", "password": "é" * 37}, 422, "invalid_password"),
        ({"username": "newbie", "role": "viewer"}, 422, "invalid_password"),
        ({"username": "newbie", "role": "root", "password": "x" * 12}, 422, "validation_error"),
        ({"username": "ab", "role": "viewer", "password": "x" * 12}, 422, "validation_error"),
        ({"username": "a b c", "role": "viewer", "password": "x" * 12}, 422, "validation_error"),
        ({"username": "x'; DROP TABLE users;--", "role": "viewer", "password": "x" * 12}, 422,
         "validation_error"),
        ({"username": "nul\u0000user", "role": "viewer", "password": "x" * 12}, 422,
         "validation_error"),
        ({"username": 123, "role": "viewer", "password": "x" * 12}, 422, "validation_error"),
        ({"username": "newbie", "role": "viewer", "password": 1234567890123}, 422,
         "validation_error"),
        ({"username": "newbie", "role": "viewer", "password": "x" * 12, "active": "yes"}, 422,
         "validation_error"),
        ({"username": "newbie", "role": "viewer", "password": "x" * 12, "is_admin": True}, 422,
         "validation_error"),
    ],
)
def test_create_user_validation(client, admin_token, body, status, code):
    response = client.post(f"{BASE}/users", json=body, headers=bearer(admin_token))
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code


def test_long_password_message_is_clear(client, admin_token):
    response = client.post(f"{BASE}/users", json={"username": "longpw", "role": "viewer",
                                                  "password": "p" * 80},
                           headers=bearer(admin_token))
    assert "72 bytes" in response.get_json()["error"]["message"]


def test_source_account_may_have_no_password(client, admin_token):
    body = create_user(client, admin_token, "pbx-main", "source", password=None)
    assert body["has_password"] is False
    assert login(client, "pbx-main", "anything-at-all").status_code == 401


def test_list_users_with_filters_and_paging(client, admin_token):
    for i in range(3):
        create_user(client, admin_token, f"viewer{i}", "viewer")
    create_user(client, admin_token, "op1", "operator")
    listing = client.get(f"{BASE}/users", query_string={"role": "viewer"},
                         headers=bearer(admin_token)).get_json()
    assert [u["username"] for u in listing["items"]] == ["viewer0", "viewer1", "viewer2"]
    assert listing["total"] == 3
    page = client.get(f"{BASE}/users", query_string={"limit": 2, "offset": 1, "sort": "-username"},
                      headers=bearer(admin_token)).get_json()
    assert page["total"] == 5
    assert [u["username"] for u in page["items"]] == ["viewer1", "viewer0"]
    inactive = client.get(f"{BASE}/users", query_string={"active": "false"},
                          headers=bearer(admin_token)).get_json()
    assert inactive["items"] == []


def test_update_role_and_active(client, admin_token):
    created = create_user(client, admin_token, "promote-me", "viewer")
    token = token_for(client, "promote-me")
    assert client.get(f"{BASE}/users", headers=bearer(token)).status_code == 403
    response = client.patch(f"{BASE}/users/{created['id']}", json={"role": "admin"},
                            headers=bearer(admin_token))
    assert response.status_code == 200 and response.get_json()["role"] == "admin"
    # The role is read from the database: the same token now has admin rights.
    assert client.get(f"{BASE}/users", headers=bearer(token)).status_code == 200
    response = client.patch(f"{BASE}/users/{created['id']}", json={"active": False},
                            headers=bearer(admin_token))
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert client.get(f"{BASE}/me", headers=bearer(token)).status_code == 401
    assert login(client, "promote-me", "a-good-password-1").status_code == 401


@pytest.mark.parametrize("body", [{}, {"role": "god"}, {"active": "no"}, {"password": "x" * 12},
                                  {"username": "rename"}])
def test_update_validation(client, admin_token, body):
    created = create_user(client, admin_token, "patch-me", "viewer")
    response = client.patch(f"{BASE}/users/{created['id']}", json=body,
                            headers=bearer(admin_token))
    assert response.status_code == 422


def test_last_admin_is_protected(client, admin_token):
    admin_id = user_id(client, admin_token, "admin")
    for method, kwargs in [("patch", {"json": {"role": "viewer"}}),
                           ("patch", {"json": {"active": False}}),
                           ("delete", {})]:
        response = getattr(client, method)(f"{BASE}/users/{admin_id}",
                                           headers=bearer(admin_token), **kwargs)
        assert response.status_code == 409, (method, kwargs)
        assert response.get_json()["error"]["code"] == "last_admin"
    create_user(client, admin_token, "second-admin", "admin")
    response = client.patch(f"{BASE}/users/{admin_id}", json={"role": "operator"},
                            headers=bearer(admin_token))
    assert response.status_code == 200


def test_delete_user(client, admin_token):
    created = create_user(client, admin_token, "delete-me", "viewer")
    assert client.delete(f"{BASE}/users/{created['id']}",
                         headers=bearer(admin_token)).status_code == 204
    assert client.get(f"{BASE}/users/{created['id']}",
                      headers=bearer(admin_token)).status_code == 404
    assert client.delete(f"{BASE}/users/{created['id']}",
                         headers=bearer(admin_token)).status_code == 404


def test_user_that_posted_calls_cannot_be_deleted(client, admin_token):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call

    created = create_user(client, admin_token, "busy-source", "source", password=None)
    import uuid

    with unit_of_work() as session:
        session.add(Call(source_id=uuid.UUID(created["id"])))
    response = client.delete(f"{BASE}/users/{created['id']}", headers=bearer(admin_token))
    assert response.status_code == 409
    assert "deactivate" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "' OR 1=1 --", "%00", "..%2F..%2Fetc"])
def test_bad_user_ids_get_404(client, admin_token, bad_id):
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(f"{BASE}/users/{bad_id}", json={"role": "viewer"},
                                           headers=bearer(admin_token))
        assert response.status_code == 404, (method, response.get_json())


def test_admin_resets_password_and_ends_sessions(client, admin_token):
    created = create_user(client, admin_token, "forgetful", "operator")
    pair = login(client, "forgetful", "a-good-password-1").get_json()
    response = client.post(f"{BASE}/users/{created['id']}/password",
                           json={"password": "brand-new-password"}, headers=bearer(admin_token))
    assert response.status_code == 204
    assert client.get(f"{BASE}/me", headers=bearer(pair["access_token"])).status_code == 401
    assert client.post(f"{BASE}/refresh",
                       json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert login(client, "forgetful", "a-good-password-1").status_code == 401
    assert login(client, "forgetful", "brand-new-password").status_code == 200
    weak = client.post(f"{BASE}/users/{created['id']}/password", json={"password": "weak"},
                       headers=bearer(admin_token))
    assert weak.status_code == 422


def test_change_own_password(client, admin_token):
    create_user(client, admin_token, "self-service", "viewer")
    token = token_for(client, "self-service")
    wrong = client.post(f"{BASE}/me/password", json={"current_password": "not-my-password",
                                                     "new_password": "another-password-1"},
                        headers=bearer(token))
    assert wrong.status_code == 403
    ok = client.post(f"{BASE}/me/password", json={"current_password": "a-good-password-1",
                                                  "new_password": "another-password-1"},
                     headers=bearer(token))
    assert ok.status_code == 204
    assert client.get(f"{BASE}/me", headers=bearer(token)).status_code == 401  # sessions ended
    assert token_for(client, "self-service", "another-password-1")


@pytest.mark.parametrize("role", ["viewer", "operator", "source"])
def test_non_admins_get_403_on_admin_endpoints(client, admin_token, role):
    target = create_user(client, admin_token, f"some-{role}", role)
    token = token_for(client, f"some-{role}")
    me = client.get(f"{BASE}/me", headers=bearer(token))
    assert me.status_code == 200 and me.get_json()["role"] == role
    calls = [
        ("get", f"{BASE}/users", None),
        ("post", f"{BASE}/users", {"username": "sneaky", "role": "admin", "password": "x" * 12}),
        ("get", f"{BASE}/users/{target['id']}", None),
        ("patch", f"{BASE}/users/{target['id']}", {"role": "admin"}),
        ("delete", f"{BASE}/users/{target['id']}", None),
        ("post", f"{BASE}/users/{target['id']}/password", {"password": "x" * 12}),
        ("get", f"{BASE}/api-keys", None),
        ("post", f"{BASE}/api-keys", {"name": "mine"}),
        ("delete", f"{BASE}/api-keys/00000000-0000-0000-0000-000000000000", None),
        ("get", f"{BASE}/audit", None),
    ]
    for method, path, body in calls:
        kwargs = {"json": body} if body is not None else {}
        response = getattr(client, method)(path, headers=bearer(token), **kwargs)
        assert response.status_code == 403, (method, path)
        assert response.get_json()["error"]["code"] == "forbidden"
        anonymous = getattr(client, method)(path, **kwargs)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing changed.
    again = client.get(f"{BASE}/users/{target['id']}", headers=bearer(admin_token)).get_json()
    assert again["role"] == role


def test_require_semantics():
    import uuid

    import flask

    from call_downloader.http.errors import ApiError
    from call_downloader.security import identity

    def req_as(role):
        app = flask.Flask("t")
        with app.test_request_context("/") as ctx:
            request = ctx.request
        request.environ[identity._CACHE_KEY] = identity.Identity(uuid.uuid4(), "u", role, "jwt")
        return request

    assert identity.require(req_as("admin")).role == "admin"  # admin with no roles listed
    assert identity.require(req_as("admin"), "viewer").role == "admin"
    assert identity.require(req_as("viewer"), "viewer", "operator").role == "viewer"
    for role, allowed in [("viewer", ()), ("viewer", ("operator",)), ("source", ("viewer",))]:
        with pytest.raises(ApiError) as err:
            identity.require(req_as(role), *allowed)
        assert err.value.status == 403


def test_login_of_admin_still_works_at_the_end(client):
    assert login(client, *ADMIN).status_code == 200
