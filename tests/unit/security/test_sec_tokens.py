"""Access JWTs: a valid token decodes; every forged or stale one raises TokenError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwt

from call_downloader.config import Settings
from call_downloader.security import tokens
from call_downloader.security.tokens import TokenError, decode_access_token, issue_access_token

SECRET = "unit-secret-0123456789abcdef0123456789"
SETTINGS = Settings(jwt_secret=SECRET, jwt_issuer="iss-x", jwt_audience="aud-y")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict, payload: dict, key: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": str(uuid.uuid4()),
        "role": "viewer",
        "iss": "iss-x",
        "aud": "aud-y",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "token_use": "access",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_issued_token_round_trips():
    uid, sid = uuid.uuid4(), uuid.uuid4()
    token, issued = issue_access_token(uid, "operator", sid, settings=SETTINGS)
    decoded = decode_access_token(token, settings=SETTINGS)
    assert decoded == issued
    assert decoded.user_id == uid and decoded.session_id == sid and decoded.role == "operator"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    body = jwt.get_unverified_claims(token)
    for name in ("sub", "role", "iss", "aud", "iat", "exp", "jti", "nbf"):
        assert name in body
    assert body["exp"] - body["iat"] == SETTINGS.access_token_minutes * 60


def test_hand_built_valid_token_is_accepted():
    # Guards the forgery tests below: the builder itself makes acceptable tokens.
    token = hs256({"alg": "HS256", "typ": "JWT"}, claims(), SECRET.encode())
    assert decode_access_token(token, settings=SETTINGS).role == "viewer"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(alg):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(role="admin")).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(TokenError):
            decode_access_token(token, settings=SETTINGS)


def test_wrong_secret_is_rejected():
    token = hs256({"alg": "HS256", "typ": "JWT"}, claims(), b"another-secret-entirely-xxxxxxxx")
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_hs256_signed_with_a_public_key_is_rejected():
    public_pem = _rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256({"alg": "HS256", "typ": "JWT"}, claims(role="admin"), public_pem)
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_rs256_token_is_rejected():
    key = _rsa_key()
    signing_input = (
        f"{b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}."
        f"{b64(json.dumps(claims(role='admin')).encode())}"
    )
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(TokenError):
        decode_access_token(f"{signing_input}.{b64(sig)}", settings=SETTINGS)


def test_other_hmac_algorithm_with_right_secret_is_rejected():
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_expired_token_is_rejected():
    past = datetime.now(UTC) - timedelta(hours=2)
    token, _ = issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=SETTINGS, now=past)
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_not_yet_valid_token_is_rejected():
    now = int(time.time())
    token = hs256({"alg": "HS256"}, claims(nbf=now + 3600, exp=now + 7200), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_token_issued_in_the_future_is_rejected():
    now = int(time.time())
    token = hs256({"alg": "HS256"}, claims(iat=now + 3600, nbf=..., exp=now + 7200),
                  SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


@pytest.mark.parametrize(
    "override",
    [{"iss": "someone-else"}, {"aud": "another-api"}, {"aud": ["another-api"]}],
)
def test_wrong_issuer_or_audience_is_rejected(override):
    token = hs256({"alg": "HS256"}, claims(**override), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub", "jti", "sid", "role",
                                     "token_use"])
def test_missing_claim_is_rejected(missing):
    token = hs256({"alg": "HS256"}, claims(**{missing: ...}), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


@pytest.mark.parametrize(
    "override",
    [
        {"exp": "tomorrow"},
        {"exp": [1, 2]},
        {"exp": {"a": 1}},
        {"iat": [1]},
        {"iat": "now"},
        {"sub": 12345},
        {"sub": "not-a-uuid"},
        {"sid": "nope"},
        {"role": "superuser"},
        {"jti": 7},
        {"token_use": "callback"},
    ],
)
def test_odd_claim_values_are_rejected(override):
    token = hs256({"alg": "HS256"}, claims(**override), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_tampered_payload_is_rejected():
    token, _ = issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=SETTINGS)
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "admin"
    forged = f"{header}.{b64(json.dumps(body).encode())}.{sig}"
    with pytest.raises(TokenError):
        decode_access_token(forged, settings=SETTINGS)
    # and a flipped signature character
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        decode_access_token(flipped, settings=SETTINGS)


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "a.b.c", "...", "eyJ.eyJ.eyJ", "Bearer x", "\x00\x01", "é.é.é",
     "x" * 5000, None, 123, b"bytes", ["a"]],
)
def test_garbage_is_rejected(garbage):
    with pytest.raises(TokenError):
        decode_access_token(garbage, settings=SETTINGS)


def test_payload_that_is_not_an_object_is_rejected():
    header = b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{header}.{b64(b'[1,2,3]')}"
    sig = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError):
        decode_access_token(f"{signing_input}.{b64(sig)}", settings=SETTINGS)


def test_secret_rotation_previous_secret_still_verifies():
    old = Settings(jwt_secret="old-secret-aaaaaaaaaaaaaaaaaaaaaaaa", jwt_issuer="iss-x",
                   jwt_audience="aud-y")
    rotated = Settings(
        jwt_secret="new-secret-bbbbbbbbbbbbbbbbbbbbbbbb, old-secret-aaaaaaaaaaaaaaaaaaaaaaaa",
        jwt_issuer="iss-x",
        jwt_audience="aud-y",
    )
    dropped = Settings(jwt_secret="new-secret-bbbbbbbbbbbbbbbbbbbbbbbb", jwt_issuer="iss-x",
                       jwt_audience="aud-y")
    old_token, _ = issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=old)
    assert decode_access_token(old_token, settings=rotated).role == "viewer"
    with pytest.raises(TokenError):
        decode_access_token(old_token, settings=dropped)
    # New tokens are signed with the first secret only.
    new_token, _ = issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=rotated)
    decode_access_token(new_token, settings=dropped)
    with pytest.raises(TokenError):
        decode_access_token(new_token, settings=old)


def test_no_secret_configured():
    empty = Settings(jwt_secret="")
    with pytest.raises(tokens.NotConfiguredError):
        issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=empty)
    token = hs256({"alg": "HS256"}, claims(), SECRET.encode())
    with pytest.raises(tokens.NotConfiguredError):
        decode_access_token(token, settings=empty)


def test_small_clock_skew_is_tolerated_but_no_more():
    now = int(time.time())
    slightly_ahead = hs256({"alg": "HS256"}, claims(iat=now + 2, nbf=now + 2), SECRET.encode())
    decode_access_token(slightly_ahead, settings=SETTINGS)
    ahead = hs256({"alg": "HS256"}, claims(nbf=now + 60), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(ahead, settings=SETTINGS)
    just_expired = hs256({"alg": "HS256"}, claims(iat=now - 100, nbf=now - 100, exp=now - 30),
                         SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(just_expired, settings=SETTINGS)


def test_denylist_fails_open_quickly_when_redis_is_down(monkeypatch):
    import redis

    from call_downloader.storage import redis_client

    calls = []

    class Down:
        def exists(self, *a):
            calls.append("exists")
            raise redis.ConnectionError("down")

        def set(self, *a, **k):
            calls.append("set")
            raise redis.ConnectionError("down")

    monkeypatch.setattr(redis_client, "get_redis", lambda: Down())
    monkeypatch.setattr(tokens, "_redis_down_until", 0.0)
    assert tokens.is_denied("abc") is False
    assert tokens.is_denied("abc") is False  # within the back-off: Redis not asked again
    assert calls == ["exists"]
    _, issued = issue_access_token(uuid.uuid4(), "viewer", uuid.uuid4(), settings=SETTINGS)
    assert tokens.deny_access_token(issued) is False
