"""The AI callback token: bound to one call and run, refused as anything else, and verified by
the rules python-jose applied (tokens in flight when PyJWT replaced it keep working)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest

from call_downloader.config import Settings
from call_downloader.pipeline import ai_callback
from call_downloader.security.tokens import issue_access_token

SECRET = "compat-secret-0123456789abcdef01234567"
SETTINGS = Settings(jwt_secret=SECRET, jwt_issuer="iss-x", jwt_audience="aud-y")
CALL_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
# Made by make_token when it still used python-jose 3.5.0 (run 3, expiring in 2099).
JOSE_CALLBACK_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMTExMTExMS0yMjIyLTQzMzMtODQ0NC01NTU1NTU1"
    "NTU1NTUiLCJydW4iOjMsImp0aSI6IjFjN2M3NTYyNGIwNjRhMWJhZmZlMDE0OTA4OTBkMjg1IiwiaXNzIjoiaXNzLX"
    "giLCJhdWQiOiJjYWxsLWRvd25sb2FkZXItYWktY2FsbGJhY2siLCJpYXQiOjE3OTU4MTc2NjEsImV4cCI6NDA5NTgy"
    "MTI2MX0.yBAtA8CUO9X8CNqUaR7fSopHjuwJSGLVKcz074lVdT8"
)


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setattr(ai_callback, "get_settings", lambda: SETTINGS)
    return SETTINGS


@pytest.fixture
def frozen_now(monkeypatch):
    now = int(time.time())
    monkeypatch.setattr(ai_callback, "_now", lambda: now)
    return now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict, *, header: dict | None = None, key: str = SECRET) -> str:
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def body(**overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": str(CALL_ID),
        "run": 2,
        "jti": uuid.uuid4().hex,
        "iss": "iss-x",
        "aud": ai_callback.AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_made_token_round_trips():
    token, jti = ai_callback.make_token(CALL_ID, 4, 600)
    assert ai_callback.verify_token(token) == ai_callback.CallbackClaims(CALL_ID, 4, jti)


def test_a_token_python_jose_made_still_verifies():
    assert ai_callback.verify_token(JOSE_CALLBACK_TOKEN) == ai_callback.CallbackClaims(
        CALL_ID, 3, "1c7c75624b064a1baffe01490890d285"
    )


def test_hand_built_valid_token_is_accepted():
    # Guards the refusals below: each differs from this token by one property.
    assert ai_callback.verify_token(signed(body())).run == 2


@pytest.mark.parametrize(
    "token",
    [
        signed(body(), key="not-the-secret-0123456789abcdef0123"),
        signed(body(), header={"alg": "none"}).rsplit(".", 1)[0] + ".",
        signed(body(), header={"alg": "HS512"}),
        signed(body(aud="aud-y")),
        signed(body(aud=[])),
        signed(body(iss="someone-else")),
        signed(body(iss=...)),
        signed(body(sub=...)),
        signed(body(jti=...)),
        signed(body(exp=...)),
        signed(body(sub="not-a-uuid")),
        signed(body(sub=12345)),
        signed(body(jti=7)),
        signed(body(run=...)),
        signed(body(run="three")),
        signed(body(iat="now")),
        "",
        "garbage",
        "a.b.c",
        "A" * 5000,
    ],
)
def test_refused_tokens(token):
    assert ai_callback.verify_token(token) is None


def test_an_access_token_is_not_a_callback_token():
    access, _ = issue_access_token(uuid.uuid4(), "admin", uuid.uuid4(), settings=SETTINGS)
    assert ai_callback.verify_token(access) is None


def test_previous_secret_still_verifies(monkeypatch):
    token, _ = ai_callback.make_token(CALL_ID, 1, 600)
    rotated = Settings(
        jwt_secret=f"new-secret-bbbbbbbbbbbbbbbbbbbbbbbb, {SECRET}", jwt_issuer="iss-x"
    )
    monkeypatch.setattr(ai_callback, "get_settings", lambda: rotated)
    assert ai_callback.verify_token(token).run == 1
    dropped = Settings(jwt_secret="new-secret-bbbbbbbbbbbbbbbbbbbbbbbb", jwt_issuer="iss-x")
    monkeypatch.setattr(ai_callback, "get_settings", lambda: dropped)
    assert ai_callback.verify_token(token) is None


@pytest.mark.parametrize(
    ("override", "accepted"),
    [
        # No leeway, python-jose's edge: expired once exp < now.
        ({"exp": 0}, True),
        ({"exp": -1}, False),
        ({"nbf": 0}, True),
        ({"nbf": 1}, False),
        # `iat` is only read as a number: a worker whose clock runs ahead signs tokens this
        # host must still take.
        ({"iat": 30}, True),
    ],
)
def test_time_claims_at_the_edges(frozen_now, override, accepted):
    token = signed(body(**{name: frozen_now + offset for name, offset in override.items()}))
    assert (ai_callback.verify_token(token) is not None) is accepted
