"""The AI service client (SPEC 3.2): ONE attempt, classified for the caller.

Default protocol: `POST url` as multipart with `file` (streamed from disk) and `metadata` (a
JSON string), plus `X-Callback-Url` when the AI may answer asynchronously. OpenAI-compatible
mode: `POST {url}/v1/audio/transcriptions` with `file`, `model` and `response_format=json`.

Outcomes:
- `result`: 200 with a JSON object (`.result`);
- `accepted`: 202, the AI will post the result to the callback URL (default protocol);
- `transient`: connection error, timeout, 408, 425, 429 (`.retry_after`), 5xx, a 200 whose
  body is not a JSON object (an HTML error page from a proxy, say) or is too large — retry later
  (the call-ai handler schedules it with `net.backoff.backoff_delay`);
- `permanent`: other 4xx (and redirects, which are not followed) — fail the call, `.reason`
  keeps what the AI said.

The `timeout` bounds the whole attempt (upload, processing, answer), not only each read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from call_downloader.net.transport import (
    Deadline,
    DeadlineExceeded,
    new_client,
    parse_retry_after,
    safe_excerpt,
    sanitize_filename,
)

# The largest AI result taken, answered or called back: a long call's transcript with word
# timings is a few MB; the JSON is parsed in memory, at several times its size.
MAX_RESULT_BYTES = 8 * 1024 * 1024
REASON_CHARS = 500
OPENAI_PATH = "/v1/audio/transcriptions"
TRANSIENT_STATUSES = frozenset({408, 425, 429})

Kind = Literal["result", "accepted", "transient", "permanent"]


@dataclass(frozen=True)
class AiOutcome:
    kind: Kind
    result: dict[str, Any] | None = None
    reason: str | None = None
    status_code: int | None = None
    retry_after: float | None = None
    latency_ms: float | None = None


class _TooLarge(Exception):
    pass


class AiClient:
    def __init__(
        self,
        url: str,
        protocol: str = "default",
        model: str = "whisper-1",
        api_key: str = "",
        timeout: float = 120.0,
        *,
        max_response_bytes: int = MAX_RESULT_BYTES,
        client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("AI_URL must be an http(s) URL")
        protocol = (protocol or "default").strip().lower()
        if protocol not in ("default", "openai"):
            raise ValueError("AI protocol must be 'default' or 'openai'")
        if not timeout or timeout <= 0:
            raise ValueError("AI timeout must be positive")
        self.protocol = protocol
        self.model = model
        self.api_key = api_key
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self.endpoint = _openai_endpoint(url) if protocol == "openai" else url
        self._client = client

    def analyze(
        self,
        audio_path: str,
        filename: str,
        content_type: str,
        metadata: dict[str, Any],
        callback_url: str | None = None,
    ) -> AiOutcome:
        """One request to the AI. Raises only for local faults (e.g. the audio file missing)."""
        headers = {"Accept": "application/json"}
        name = sanitize_filename(filename) or "audio"
        ctype = content_type or "application/octet-stream"
        if self.protocol == "openai":
            data = {"model": self.model, "response_format": "json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
        else:
            data = {"metadata": json.dumps(metadata, ensure_ascii=False, default=str)}
            if callback_url:
                headers["X-Callback-Url"] = callback_url
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"

        started = time.monotonic()
        http = self._client or new_client()
        try:
            with open(audio_path, "rb") as audio, Deadline(self.timeout) as deadline:
                # httpx streams a file object in 64 KiB pieces (with a Content-Length from
                # fstat), so a large recording never sits in memory.
                request = http.build_request(
                    "POST",
                    self.endpoint,
                    headers=headers,
                    data=data,
                    files={"file": (name, audio, ctype)},
                    timeout=deadline.timeout(),
                    extensions=deadline.extensions(),
                )
                try:
                    response = http.send(request, stream=True, follow_redirects=False)
                except (DeadlineExceeded, httpx.TimeoutException):
                    return self._timeout(started)
                except (httpx.HTTPError, OSError) as exc:
                    if deadline.expired:
                        return self._timeout(started)
                    return AiOutcome(
                        "transient",
                        reason=f"AI service unreachable ({type(exc).__name__})",
                        latency_ms=_ms(started),
                    )
                deadline.watch_response(response)
                try:
                    body = self._read_body(response, deadline)
                except _TooLarge:
                    return AiOutcome(
                        "transient",
                        reason=f"AI answer larger than {self.max_response_bytes} bytes",
                        status_code=response.status_code,
                        latency_ms=_ms(started),
                    )
                except (DeadlineExceeded, httpx.TimeoutException):
                    return self._timeout(started, response.status_code)
                except (httpx.HTTPError, OSError):
                    if deadline.expired:
                        return self._timeout(started, response.status_code)
                    return AiOutcome(
                        "transient",
                        reason="AI service closed the connection while answering",
                        status_code=response.status_code,
                        latency_ms=_ms(started),
                    )
                finally:
                    response.close()
        finally:
            if self._client is None:
                http.close()
        return self._classify(response, body, _ms(started))

    def _timeout(self, started: float, status: int | None = None) -> AiOutcome:
        return AiOutcome(
            "transient",
            reason=f"AI service did not answer within {self.timeout:g} s",
            status_code=status,
            latency_ms=_ms(started),
        )

    def _read_body(self, response: httpx.Response, deadline: Deadline) -> bytes:
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise _TooLarge()
        buffer = bytearray()
        # Decoded bytes are counted, so a compressed answer is bounded by what it expands to.
        for chunk in response.iter_bytes(chunk_size=65536):
            buffer += chunk
            if len(buffer) > self.max_response_bytes:
                raise _TooLarge()
            deadline.check()
        return bytes(buffer)

    def _classify(self, response: httpx.Response, body: bytes, latency: float) -> AiOutcome:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))

        def outcome(kind: Kind, reason: str | None = None, **extra: Any) -> AiOutcome:
            return AiOutcome(kind, reason=reason, status_code=status, latency_ms=latency, **extra)

        if status in (200, 201):
            parsed = _json_object(response, body)
            if parsed is None:
                what = "an HTML page" if _looks_like_html(response, body) else "no JSON object"
                return outcome("transient", f"AI answered HTTP {status} with {what}")
            return outcome("result", result=parsed)
        if status == 202:
            if self.protocol == "openai":
                return outcome("transient", "AI answered 202, but OpenAI mode expects a result")
            return outcome("accepted")
        if 200 <= status < 300:
            return outcome("transient", f"AI answered HTTP {status} without a result")
        if 300 <= status < 400:
            return outcome(
                "permanent",
                f"AI answered with a redirect (HTTP {status}); redirects are not followed, "
                "set AI_URL to the final address",
            )
        if status in TRANSIENT_STATUSES or status >= 500:
            detail = _reason(response, body)
            reason = f"AI answered HTTP {status}" + (f": {detail}" if detail else "")
            return outcome("transient", reason, retry_after=retry_after)
        detail = _reason(response, body)
        return outcome(
            "permanent", f"AI answered HTTP {status}" + (f": {detail}" if detail else "")
        )


def _openai_endpoint(url: str) -> str:
    base = url.rstrip("/")
    if base.endswith(OPENAI_PATH):
        return base
    if base.endswith("/v1"):
        return base + OPENAI_PATH[len("/v1") :]
    return base + OPENAI_PATH


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)


def _json_object(response: httpx.Response, body: bytes) -> dict[str, Any] | None:
    if _looks_like_html(response, body):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _looks_like_html(response: httpx.Response, body: bytes) -> bool:
    ctype = response.headers.get("content-type", "").lower()
    head = body[:256].lstrip().lower()
    return "html" in ctype or head.startswith((b"<!doctype", b"<html"))


def _reason(response: httpx.Response, body: bytes) -> str:
    """What the AI said went wrong: the message of a JSON error body, else a text excerpt."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    message: Any = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("code")
        elif isinstance(error, str):
            message = error
        for key in ("detail", "message", "reason", "error_description"):
            if not message and parsed.get(key):
                message = parsed[key]
    if message is not None and not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    if not message:
        if _looks_like_html(response, body):
            return "(HTML error page)"
        message = body.decode("utf-8", errors="replace")
    return safe_excerpt(message.encode("utf-8"), REASON_CHARS).strip()
