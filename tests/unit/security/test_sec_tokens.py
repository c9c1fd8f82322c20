"""Access JWTs: a valid token decodes; every forged or stale one raises TokenError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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
    body = jwt.decode(token, options={"verify_signature": False})
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
    public_pem = (
        _rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
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


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_other_hmac_algorithm_with_right_secret_is_rejected(alg):
    signing_input = f"{b64(json.dumps({'alg': alg}).encode())}.{b64(json.dumps(claims()).encode())}"
    digest = hashlib.sha512 if alg == "HS512" else hashlib.sha384
    sig = hmac.new(SECRET.encode(), signing_input.encode(), digest).digest()
    with pytest.raises(TokenError):
        decode_access_token(f"{signing_input}.{b64(sig)}", settings=SETTINGS)


def test_the_jws_knows_hs256_alone():
    # What makes the header's `alg` irrelevant beyond HS256, whatever PyJWT supports.
    assert tokens._JWS.get_algorithms() == ["HS256"]


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
    token = hs256(
        {"alg": "HS256"}, claims(iat=now + 3600, nbf=..., exp=now + 7200), SECRET.encode()
    )
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


@pytest.mark.parametrize(
    "missing", ["exp", "iat", "iss", "aud", "sub", "jti", "sid", "role", "token_use"]
)
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
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "eyJ.eyJ.eyJ",
        "Bearer x",
        "\x00\x01",
        "é.é.é",
        "x" * 5000,
        None,
        123,
        b"bytes",
        ["a"],
    ],
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
    old = Settings(
        jwt_secret="old-secret-aaaaaaaaaaaaaaaaaaaaaaaa", jwt_issuer="iss-x", jwt_audience="aud-y"
    )
    rotated = Settings(
        jwt_secret="new-secret-bbbbbbbbbbbbbbbbbbbbbbbb, old-secret-aaaaaaaaaaaaaaaaaaaaaaaa",
        jwt_issuer="iss-x",
        jwt_audience="aud-y",
    )
    dropped = Settings(
        jwt_secret="new-secret-bbbbbbbbbbbbbbbbbbbbbbbb", jwt_issuer="iss-x", jwt_audience="aud-y"
    )
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
    just_expired = hs256(
        {"alg": "HS256"}, claims(iat=now - 100, nbf=now - 100, exp=now - 30), SECRET.encode()
    )
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


# -- compatibility with the tokens python-jose issued, and its exact rules -------------------

JOSE_SECRET = "compat-secret-0123456789abcdef01234567"
JOSE_SETTINGS = Settings(jwt_secret=JOSE_SECRET, jwt_issuer="iss-x", jwt_audience="aud-y")
# Issued by issue_access_token when it still used python-jose 3.5.0 (now 2026-01-01, expiring
# 2100-01-01): tokens in users' hands at the switch to PyJWT must keep working.
JOSE_ACCESS_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMTExMTExMS0yMjIyLTQzMzMtODQ0NC01NTU1NTU1"
    "NTU1NTUiLCJyb2xlIjoib3BlcmF0b3IiLCJpc3MiOiJpc3MteCIsImF1ZCI6ImF1ZC15IiwiaWF0IjoxNzY3MjI1Nj"
    "AwLCJuYmYiOjE3NjcyMjU2MDAsImV4cCI6NDEwMjQ0NDgwMCwianRpIjoiMzQwZGYwMDI0OTY3NDkzMzhjYmIzMWQx"
    "ZDU1ZjQ4MGEiLCJzaWQiOiI2NjY2NjY2Ni03Nzc3LTQ4ODgtOTk5OS1hYWFhYWFhYWFhYWEiLCJ0b2tlbl91c2UiOi"
    "JhY2Nlc3MifQ.UiajqQ0rqxLY6c3wGIg_Wue2Kn604vGZebTyQ5Box5g"
)


def test_a_token_python_jose_issued_still_verifies():
    decoded = decode_access_token(JOSE_ACCESS_TOKEN, settings=JOSE_SETTINGS)
    assert decoded == tokens.AccessClaims(
        user_id=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        role="operator",
        jti="340df002496749338cbb31d1d55f480a",
        session_id=uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa"),
        issued_at=1767225600,
        expires_at=4102444800,
    )
    with pytest.raises(TokenError):  # and it is bound to its secret, as ever
        decode_access_token(JOSE_ACCESS_TOKEN, settings=SETTINGS)


def test_signing_the_same_claims_gives_python_jose_bytes():
    body = jwt.decode(JOSE_ACCESS_TOKEN, options={"verify_signature": False})
    assert tokens.sign_hs256(body, JOSE_SECRET) == JOSE_ACCESS_TOKEN


@pytest.fixture
def frozen_now(monkeypatch):
    """tokens' clock stopped on a whole second (nbf/exp/iat boundaries without races)."""
    now = int(time.time())
    monkeypatch.setattr(tokens, "_now", lambda: datetime.fromtimestamp(now, UTC))
    return now


@pytest.mark.parametrize(
    ("override", "accepted"),
    [
        # python-jose's edges, kept: expired only when exp < now - leeway (PyJWT's own check
        # would refuse exp == now - leeway) ...
        ({"iat": -100, "nbf": -100, "exp": -5}, True),
        ({"iat": -100, "nbf": -100, "exp": -6}, False),
        # ... not yet valid when nbf > now + leeway, issued in the future when iat > now + leeway.
        ({"nbf": 5}, True),
        ({"nbf": 6}, False),
        ({"iat": 5, "nbf": 0}, True),
        ({"iat": 6, "nbf": 0}, False),
    ],
)
def test_time_claims_at_the_edges_of_the_leeway(frozen_now, override, accepted):
    body = claims(**{name: frozen_now + offset for name, offset in override.items()})
    token = hs256({"alg": "HS256"}, body, SECRET.encode())
    if accepted:
        assert decode_access_token(token, settings=SETTINGS).jti == body["jti"]
    else:
        with pytest.raises(TokenError):
            decode_access_token(token, settings=SETTINGS)


@pytest.mark.parametrize(
    "override",
    [
        {"nbf": None},
        {"nbf": "soon"},
        {"nbf": [1]},
        {"exp": None},
        {"iat": None},
        {"aud": None},
        {"aud": ["aud-y", 3]},
        {"iss": None},
        {"iss": ["iss-x"]},
        {"sub": None},
        {"jti": None},
    ],
)
def test_claims_of_unreadable_types_are_rejected(override):
    token = hs256({"alg": "HS256"}, claims(**override), SECRET.encode())
    with pytest.raises(TokenError):
        decode_access_token(token, settings=SETTINGS)


def test_an_audience_list_naming_ours_is_accepted():
    token = hs256({"alg": "HS256"}, claims(aud=["other", "aud-y"]), SECRET.encode())
    assert decode_access_token(token, settings=SETTINGS).role == "viewer"


@pytest.mark.parametrize("payload", [b"\xff\xfe{}", b'{"a": ' * 5000 + b"1" + b"}" * 5000])
def test_payload_that_is_not_utf8_json_is_rejected(payload):
    signing_input = f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(payload)}"
    sig = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError):
        decode_access_token(f"{signing_input}.{b64(sig)}", settings=SETTINGS)
