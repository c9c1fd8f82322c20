"""Every HTTP route of every function, swept with hostile input: path parameters, query
parameters, JSON and form bodies, and credentials. Nothing may answer 5xx, every refusal is the
API's JSON error, and nothing refused may leave a row, a blob or a cache entry behind.

The routes come from the functions' own routers, so a route added later is swept too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hostile_helpers import assert_clear_refusal, footprint

INJECTION = [
    "' OR '1'='1' --",
    "1; DROP TABLE calls; --",
    '"; SELECT pg_sleep(5); --',
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "{{7*7}}",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "a\x00b",
    "line\r\nInjected: header",
    "\u202eevil",
    "\U0001f600" * 50,
    "A" * 5000,
    "-1",
    "0",
    "1e309",
    "NaN",
    "null",
    "[]",
    "{}",
]
PATH_VALUES = [
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "' OR 1=1 --",
    "..%2F..%2Fetc",
    "%00",
    "A" * 3000,
    "msg_" + "f" * 32,
    "-1",
]
DEEP = "[" * 20000 + "]" * 20000
FIELDS = [
    "name", "url", "secret", "enabled", "overlap_seconds", "since", "until", "destination_id",
    "limit", "username", "password", "role", "active", "current_password", "new_password",
    "refresh_token", "grant_type", "user_id", "audio_url", "external_id", "metadata", "access",
    "download", "cursor", "status", "sort", "q",
]  # fmt: skip
HOSTILE_VALUES: list[Any] = [
    None, True, -1, 10**30, 1.5, float("nan"), float("inf"), "", "A" * 100_000, [1, 2],
    {"$gt": ""}, "' OR 1=1 --", "\x00", "http://169.254.169.254/", "javascript:alert(1)",
    "2026-13-45T99:99:99", "9999-12-31T23:59:59Z",
]  # fmt: skip
QUERY_VALUES = ["-1", "0", "1e309", "NaN", "99999999999999999999", "' OR 1=1", "\x00", "A" * 3000,
                "2026-13-45", "[]", "%ff", "created_at;DROP", "-id"]  # fmt: skip


def routes() -> list[tuple[str, str, str]]:
    from call_downloader.api.calls import router as calls_router
    from call_downloader.api.ingest import router as ingest_router
    from call_downloader.security.api import router as auth_router

    found = []
    for function, router in (
        ("ingest", ingest_router),
        ("calls", calls_router),
        ("auth", auth_router),
    ):
        for rule in router._map.iter_rules():
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((function, method, rule.rule))
    return found


ROUTES = routes()


def fill(rule: str, value: str) -> str:
    import re

    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", value, rule)


def send(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = client.open(path, method=method, **kwargs)
    assert response.status_code < 500, (method, path, response.status_code, response.data[:300])
    if response.status_code >= 400:
        assert_clear_refusal(response)
    return response


def json_bodies() -> list[Any]:
    bodies: list[Any] = ["[1,2", "null", "[]", '"text"', '{"a": NaN}', '{"a": Infinity}']
    bodies.append('{"a": "\\u0000"}')
    bodies.append('{"a": "\\ud800"}')
    bodies.append("\xff\xfe garbage")
    for value in HOSTILE_VALUES:
        bodies.append(json.dumps({f: value for f in FIELDS}, allow_nan=True))
    for field_name in FIELDS:
        bodies.append(json.dumps({field_name: "' OR 1=1 --", "unknown_field": 1}))
    return bodies


def test_the_sweep_covers_every_function():
    assert {f for f, _, _ in ROUTES} == {"ingest", "calls", "auth"}
    assert len(ROUTES) >= 30


@pytest.mark.parametrize("function,method,rule", ROUTES, ids=[f"{m} {r}" for _, m, r in ROUTES])
def test_hostile_requests_never_get_a_5xx_nor_leave_anything(
    clients, people, no_outbound, function, method, rule
):
    client = clients[function]
    before = footprint()
    admin = people["admin"].headers
    # Credentials: none, malformed, forged.
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "A" * 10000},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."},
        {"X-API-Key": "' OR 1=1 --"},
        {"X-API-Key": "cdk_" + "A" * 5000},
    ):
        path = fill(rule, PATH_VALUES[0])
        response = send(client, method, path, headers=headers)
        public = ("/healthz", "/readyz", "/api/v1/auth/token", "/api/v1/auth/refresh")
        if rule not in (*public, "/api/v1/openapi.json"):
            if rule != "/api/v1/ai/callback":
                assert response.status_code in (401, 403), (method, rule, headers)
    # Path parameters.
    if "<" in rule:
        for value in PATH_VALUES:
            send(client, method, fill(rule, value), headers=admin)
    path = fill(rule, PATH_VALUES[0])
    # Query parameters (every known name, hostile values).
    for value in QUERY_VALUES:
        send(client, method, path, headers=admin, query_string={f: value for f in FIELDS})
    if method in ("POST", "PATCH", "PUT", "DELETE"):
        for body in json_bodies():
            data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
            send(client, method, path, headers=admin, data=data, content_type="application/json")
        for value in INJECTION:
            form = {f: value for f in FIELDS}
            send(client, method, path, headers=admin, data=form)
        send(client, method, path, headers=admin, data=b"\x00" * 1000, content_type="text/plain")
        send(
            client, method, path, headers=admin, data=b"--x\r\n\r\n",
            content_type="multipart/form-data; boundary=x",
        )  # fmt: skip
        send(
            client, method, path, headers=admin, data=b"a=1",
            content_type="application/x-www-form-urlencoded; charset=utf-7",
        )  # fmt: skip
    after = footprint()
    if function == "auth" and method == "POST" and rule.endswith(("/users", "/api-keys")):
        # Hostile but valid names create users or keys (their names are data, not code);
        # nothing else may change.
        after = {k: v for k, v in after.items() if k not in ("users", "api_keys")}
        before = {k: v for k, v in before.items() if k not in ("users", "api_keys")}
    if function == "calls" and method == "POST" and rule == "/api/v1/destinations":
        after.pop("destinations"), before.pop("destinations")
    assert after == before


# Routes whose JSON parsing still lets Python's RecursionError through as a 500 (bug reported
# to their owners: api/params.py json_body, security/api.py _body; the AI callback's own case is
# in test_hostile_ingest.py).
# Strict: once fixed, these pass and the marker must go.
DEEP_JSON_BUG = {
    ("calls", "POST", "/api/v1/calls/<call_id>/retry"),
    ("calls", "POST", "/api/v1/calls/<call_id>/rerun-ai"),
    ("calls", "POST", "/api/v1/destinations"),
    ("calls", "PATCH", "/api/v1/destinations/<dest_id>"),
    ("calls", "POST", "/api/v1/destinations/<dest_id>/rotate-secret"),
    ("calls", "POST", "/api/v1/destinations/<dest_id>/test"),
    ("calls", "POST", "/api/v1/dead-letters/replay"),
    ("auth", "POST", "/api/v1/auth/token"),
    ("auth", "POST", "/api/v1/auth/refresh"),
    ("auth", "POST", "/api/v1/auth/logout"),
    ("auth", "POST", "/api/v1/auth/me/password"),
    ("auth", "POST", "/api/v1/auth/users"),
    ("auth", "PATCH", "/api/v1/auth/users/<user_id>"),
    ("auth", "POST", "/api/v1/auth/users/<user_id>/password"),
    ("auth", "POST", "/api/v1/auth/api-keys"),
}
BODY_ROUTES = [
    pytest.param(
        f, m, r,
        id=f"{m} {r}",
    )
    for f, m, r in ROUTES
    if m in ("POST", "PATCH", "PUT", "DELETE")
]  # fmt: skip


@pytest.mark.parametrize("function,method,rule", BODY_ROUTES)
def test_deeply_nested_json_is_a_4xx(clients, people, function, method, rule):
    client = clients[function]
    path = fill(rule, PATH_VALUES[0])
    response = client.open(
        path, method=method, headers=people["admin"].headers, data=DEEP,
        content_type="application/json",
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.status_code
    assert_clear_refusal(response)
