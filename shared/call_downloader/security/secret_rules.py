"""How strong a secret must be (SPEC 3.4): the one place for the rules the settings, the
destinations API and the webhook signer apply. Light on purpose: the settings import it.

- `JWT_SECRET`: every secret of the comma-separated list at least 32 bytes (HS256 keys
  shorter than the hash are guessable offline from any token).
- Webhook secrets: `whsec_` + base64 of 24 to 64 bytes (Standard Webhooks).
"""

from __future__ import annotations

import base64
import binascii

MIN_JWT_SECRET_BYTES = 32
WEBHOOK_PREFIX = "whsec_"
MIN_WEBHOOK_KEY_BYTES = 24
MAX_WEBHOOK_KEY_BYTES = 64
MAKE_JWT_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105
MAKE_WEBHOOK_SECRET = 'echo "whsec_$(openssl rand -base64 32)"'  # noqa: S105


def check_jwt_secrets(secrets: tuple[str, ...]) -> None:
    """ValueError naming JWT_SECRET (never the value) when one of `secrets` is too short."""
    for position, secret in enumerate(secrets, start=1):
        if len(secret.encode("utf-8")) < MIN_JWT_SECRET_BYTES:
            which = f" (secret {position} of the list)" if len(secrets) > 1 else ""
            raise ValueError(
                f"JWT_SECRET{which} is shorter than {MIN_JWT_SECRET_BYTES} bytes: "
                f"use a random one, e.g. `{MAKE_JWT_SECRET}`"
            )


def webhook_key(secret: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret (the prefix is optional); ValueError when
    it is not one. Strict, because the Standard Webhooks library skips characters that are not
    base64, so a mistyped secret would silently become another key. No length rule: secrets
    stored before the rule existed keep signing."""
    if not isinstance(secret, str) or not secret.strip():
        raise ValueError("webhook secret is empty")
    body = secret.strip().removeprefix(WEBHOOK_PREFIX)
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def check_webhook_secret(secret: str) -> str:
    """`secret`, stripped, if it may be given to a destination now: a valid `whsec_` secret
    of 24 to 64 bytes. ValueError otherwise."""
    size = len(webhook_key(secret))
    if not MIN_WEBHOOK_KEY_BYTES <= size <= MAX_WEBHOOK_KEY_BYTES:
        raise ValueError(
            f"webhook secret must encode {MIN_WEBHOOK_KEY_BYTES} to {MAX_WEBHOOK_KEY_BYTES} "
            f"random bytes (this one has {size}); e.g. `{MAKE_WEBHOOK_SECRET}`"
        )
    return secret.strip()
