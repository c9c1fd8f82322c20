"""Standard Webhooks (SPEC 3.3): signing with the `standardwebhooks` library, and one guarded
delivery attempt.

`sign_headers` signs with every secret given (current first, previous ones during a rotation),
so receivers holding either secret verify the message. `post_webhook` makes ONE attempt and
classifies it; the retry schedule lives with the caller (see `net.backoff`).
"""

from __future__ import annotations

import base64
import secrets as _secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx
from standardwebhooks import Webhook

from call_downloader.net.ssrf import Policy, Resolver, TargetError, check_url
from call_downloader.net.transport import (
    Deadline,
    DeadlineExceeded,
    new_client,
    parse_retry_after,
    read_bounded,
    safe_excerpt,
    send_pinned,
)
from call_downloader.security.secret_rules import WEBHOOK_PREFIX, webhook_key

EXCERPT_CHARS = 500
EXCERPT_READ_BYTES = 4096  # enough for 500 characters of UTF-8; the rest is never read

Outcome = Literal["delivered", "retry", "gone"]


def generate_secret(num_bytes: int = 32) -> str:
    """A new `whsec_<base64>` secret (Standard Webhooks recommends 24 to 64 random bytes)."""
    return WEBHOOK_PREFIX + base64.b64encode(_secrets.token_bytes(num_bytes)).decode("ascii")


def sign_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` (one `v1,<sig>` per secret,
    space-separated) for `body`, which must be UTF-8 (the signed content is text)."""
    if not msg_id or any(c in msg_id for c in "\r\n"):
        raise ValueError("webhook message id must be a non-empty single line")
    for secret in secrets:
        webhook_key(secret)  # a malformed secret must fail here, not become another key
    secret_list = [s.strip() for s in secrets]
    if not secret_list:
        raise ValueError("at least one webhook secret is required")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("webhook body must be UTF-8") from None
    ts = int(time.time()) if timestamp is None else int(timestamp)
    when = datetime.fromtimestamp(ts, tz=UTC)
    signatures = [Webhook(s).sign(msg_id=msg_id, timestamp=when, data=text) for s in secret_list]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(dict.fromkeys(signatures)),
    }


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    latency_ms: float
    excerpt: str
    error: str | None
    retry_after: float | None
    outcome: Outcome


def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    policy: Policy,
    resolver: Resolver | None = None,
    client: httpx.Client | None = None,
) -> AttemptOutcome:
    """POST `body` once. 2xx -> delivered; 410 -> gone; anything else (3xx, which is not
    followed, 4xx, 5xx, timeout, connection error, refused destination) -> retry. Never raises
    for a network or destination fault."""
    started = time.monotonic()

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000.0, 3)

    def failed(error: str, status: int | None = None) -> AttemptOutcome:
        return AttemptOutcome(status, elapsed(), "", error, None, "retry")

    own_client = client is None
    http = client if client is not None else new_client()
    send_headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **headers}
    try:
        with Deadline(timeout) as deadline:
            try:
                target = check_url(url, policy=policy, resolver=resolver)
            except TargetError as exc:
                return failed(f"destination refused: {exc.reason}")
            try:
                response = send_pinned(
                    http, "POST", target, deadline, headers=send_headers, content=body
                )
            except (DeadlineExceeded, httpx.TimeoutException):
                return failed(f"timed out after {timeout:g} s")
            except (httpx.HTTPError, OSError) as exc:
                if deadline.expired:
                    return failed(f"timed out after {timeout:g} s")
                return failed(_describe_transport(exc))
            latency = elapsed()
            try:
                status = response.status_code
                excerpt = _excerpt(response, deadline)
            finally:
                response.close()
    finally:
        if own_client:
            http.close()

    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if 200 <= status < 300:
        return AttemptOutcome(status, latency, excerpt, None, None, "delivered")
    if status == 410:
        return AttemptOutcome(status, latency, excerpt, "HTTP 410 Gone", None, "gone")
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are not followed"
    else:
        error = f"HTTP {status}"
    return AttemptOutcome(status, latency, excerpt, error, retry_after, "retry")


def _excerpt(response: httpx.Response, deadline: Deadline) -> str:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    try:
        data = read_bounded(response, EXCERPT_READ_BYTES, deadline)
    except (DeadlineExceeded, httpx.HTTPError, OSError):
        return ""  # the status already arrived; a slow or broken body does not change it
    if encoding not in ("", "identity"):
        return f"<{encoding[:40]}-encoded body>"
    return safe_excerpt(data, EXCERPT_CHARS)


def _describe_transport(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "certificate" in text.lower():
            return "TLS certificate verification failed"
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the destination closed the connection without a valid answer"
    return f"transport error ({type(exc).__name__})"
