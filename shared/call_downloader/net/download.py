"""The "downloader" of `audio_url` (SPEC 3.1): one guarded, bounded, streamed HTTP GET.

    with open_download(url, policy=Policy.public_only(allowlist), max_bytes=..., timeout=...) as d:
        for chunk in d.iter_chunks():
            ...

Guarantees: the URL passes `ssrf.check_url` and the connection goes to the checked addresses
only (https still verifies the certificate for the original name); redirects are refused, not
followed; a declared `Content-Length` over `max_bytes` is refused before reading the body, and
an undeclared one stops as soon as `max_bytes` is passed; `timeout` bounds the whole exchange
(connection, headers and body), so a server trickling bytes is cut off too; memory stays at
about one `chunk_size`.

Every failure is a `DownloadError` with a stable `.code` and a `.message` safe to show to the
client (it names no internal address). A refused target is wrapped, not re-raised: code
`audio_url_forbidden`, with the `ssrf.ForbiddenTarget` as `__cause__`. Suggested HTTP mapping
for ingest: `audio_url_forbidden` -> 400/422, `too_large` -> 413, anything else -> 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from call_downloader.net.ssrf import (
    ForbiddenTarget,
    Policy,
    Resolver,
    UnresolvableTarget,
    check_url,
)
from call_downloader.net.transport import (
    Deadline,
    DeadlineExceeded,
    filename_from_response,
    new_client,
    send_pinned,
)

FORBIDDEN = "audio_url_forbidden"
FAILED = "download_failed"
TIMEOUT = "download_timeout"
REDIRECT = "redirect_refused"
TOO_LARGE = "too_large"
# Identity only: a compressed body could expand past every limit (and is refused if sent).
_HEADERS = {"Accept": "*/*", "Accept-Encoding": "identity"}


class DownloadError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DownloadTooLarge(DownloadError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(TOO_LARGE, f"the file is larger than the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


class Download:
    """An answered download whose body has not been read yet."""

    def __init__(
        self,
        url: str,
        response: httpx.Response,
        deadline: Deadline,
        max_bytes: int,
        chunk_size: int,
        timeout: float,
    ) -> None:
        self.url = url
        self.status_code = response.status_code
        raw_type = response.headers.get("content-type", "")
        self.content_type: str | None = raw_type.split(";", 1)[0].strip().lower() or None
        self.content_length = _content_length(response)
        self.filename = filename_from_response(response.headers.get("content-disposition"), url)
        self.bytes_read = 0
        self._response = response
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._chunk_size = chunk_size
        self._timeout = timeout
        self._started = False

    def iter_chunks(self) -> Iterator[bytes]:
        """The body in chunks of at most `chunk_size` bytes; raises DownloadError (too large,
        timeout, connection cut before the declared length arrived)."""
        if self._started:
            raise RuntimeError("iter_chunks() can only be called once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        stream = self._response.iter_raw(chunk_size=self._chunk_size)
        while True:
            with _translated(self._deadline, self._timeout, during_body=True):
                chunk = next(stream, None)
                if chunk is None:
                    return
                self.bytes_read += len(chunk)
                if self.bytes_read > self._max_bytes:
                    raise DownloadTooLarge(self._max_bytes)
                self._deadline.check()
            yield chunk


@contextmanager
def open_download(
    url: str,
    *,
    policy: Policy,
    max_bytes: int,
    timeout: float,
    chunk_size: int = 1 << 20,
    resolver: Resolver | None = None,
    client: httpx.Client | None = None,
) -> Iterator[Download]:
    """Check, connect and read the response headers; yield a `Download` to stream the body.

    A `client` passed in should be built like `transport.new_client()` (`trust_env=False`:
    an environment proxy would bypass the address pinning); it is not closed here.
    """
    if max_bytes <= 0 or chunk_size <= 0:
        raise ValueError("max_bytes and chunk_size must be positive")
    own_client = client is None
    http = client if client is not None else new_client()
    try:
        with Deadline(timeout) as deadline:
            with _translated(deadline, timeout):
                target = check_url(url, policy=policy, resolver=resolver)
                response = send_pinned(http, "GET", target, deadline, headers=_HEADERS)
            try:
                _check_response(response, max_bytes)
                yield Download(url, response, deadline, max_bytes, chunk_size, timeout)
            finally:
                response.close()
    finally:
        if own_client:
            http.close()


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise DownloadError(
            REDIRECT,
            f"the server answered with a redirect (HTTP {status}); redirects are not followed",
        )
    if not 200 <= status < 300:
        raise DownloadError(FAILED, f"the server answered HTTP {status}")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Decoding would let a small compressed body expand past every limit.
        raise DownloadError(FAILED, f"the server sent an encoded body ({encoding[:40]})")
    length = _content_length(response)
    if length is not None and length > max_bytes:
        raise DownloadTooLarge(max_bytes)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


@contextmanager
def _translated(deadline: Deadline, timeout: float, during_body: bool = False) -> Iterator[None]:
    """Turn target refusals and transport failures into DownloadError."""
    try:
        yield
    except ForbiddenTarget as exc:
        raise DownloadError(FORBIDDEN, f"audio_url is not allowed: {exc.reason}") from exc
    except UnresolvableTarget as exc:
        raise DownloadError(FAILED, f"audio_url could not be fetched: {exc.reason}") from exc
    except (DeadlineExceeded, httpx.TimeoutException) as exc:
        raise _timeout_error(timeout) from exc
    except (httpx.HTTPError, OSError) as exc:
        if deadline.expired:
            raise _timeout_error(timeout) from exc
        raise DownloadError(FAILED, _describe(exc, during_body)) from exc


def _timeout_error(timeout: float) -> DownloadError:
    return DownloadError(TIMEOUT, f"the download did not finish within {timeout:g} seconds")


def _describe(exc: Exception, during_body: bool) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
        return "the server's TLS certificate could not be verified"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect to the server"
    if during_body:
        return "the connection ended before the whole file was received"
    return "the server did not answer properly"
