"""The single-purpose token in the URL an asynchronous AI posts its result to (SPEC 3.2).

A JWT with its own audience, so it can never pass as an access token, bound to one call and
one AI run; the call keeps the token's `jti`, and the first accepted callback clears it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from jose import JWTError, jwt

from call_downloader.config import get_settings

AUDIENCE = "call-downloader-ai-callback"
ALGORITHM = "HS256"


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


def make_token(call_id: uuid.UUID, run: int, lifetime_seconds: float) -> tuple[str, str]:
    settings = get_settings()
    jti = uuid.uuid4().hex
    now = int(time.time())
    claims = {
        "sub": str(call_id),
        "run": run,
        "jti": jti,
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(lifetime_seconds) + 3600,
    }
    return jwt.encode(claims, _secrets()[0], algorithm=ALGORITHM), jti


def callback_url(token: str) -> str:
    base = get_settings().public_base_url.rstrip("/")
    return f"{base}/api/v1/ai/callback?token={token}"


def verify_token(token: str) -> CallbackClaims | None:
    settings = get_settings()
    for secret in _secrets():
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=settings.jwt_issuer,
                options={"require_exp": True, "require_sub": True, "require_jti": True},
            )
        except JWTError:
            continue
        try:
            return CallbackClaims(uuid.UUID(claims["sub"]), int(claims["run"]), str(claims["jti"]))
        except (KeyError, ValueError, TypeError):
            return None
    return None
