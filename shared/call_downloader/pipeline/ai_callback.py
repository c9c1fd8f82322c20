"""The single-purpose token in the URL an asynchronous AI posts its result to (SPEC 3.2).

A JWT with its own audience, so it can never pass as an access token, bound to one call and
one AI run; the call keeps the token's `jti`, and the first accepted callback clears it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from call_downloader.config import get_settings
from call_downloader.security.tokens import TokenError, sign_hs256, verify_hs256

AUDIENCE = "call-downloader-ai-callback"
# What python-jose required of it; `aud` is checked when present, `iss` must match (be present).
REQUIRED_CLAIMS = ("exp", "sub", "jti")


@dataclass(frozen=True)
class CallbackClaims:
    call_id: uuid.UUID
    run: int
    jti: str


def _secrets() -> tuple[str, ...]:
    secrets = get_settings().jwt_secrets
    if not secrets:
        raise RuntimeError("JWT_SECRET is not set")
    return secrets


def _now() -> int:
    return int(time.time())


def make_token(call_id: uuid.UUID, run: int, lifetime_seconds: float) -> tuple[str, str]:
    settings = get_settings()
    jti = uuid.uuid4().hex
    now = _now()
    claims = {
        "sub": str(call_id),
        "run": run,
        "jti": jti,
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(lifetime_seconds) + 3600,
    }
    return sign_hs256(claims, _secrets()[0]), jti


def callback_url(token: str) -> str:
    base = get_settings().public_base_url.rstrip("/")
    return f"{base}/api/v1/ai/callback?token={token}"


def verify_token(token: str) -> CallbackClaims | None:
    settings = get_settings()
    try:
        claims = verify_hs256(
            token,
            _secrets(),
            audience=AUDIENCE,
            issuer=settings.jwt_issuer,
            required=REQUIRED_CLAIMS,
            leeway=0,
            now=_now(),
        )
    except TokenError:
        return None
    try:
        return CallbackClaims(uuid.UUID(claims["sub"]), int(claims["run"]), str(claims["jti"]))
    except (KeyError, ValueError, TypeError):
        return None
