"""HTTP plumbing shared by the downloader, the webhook poster and the AI client.

- `Deadline`: an overall time limit for one exchange. httpx's timeouts bound each socket
  operation, so a peer that trickles one byte per second never trips them; the deadline's
  watchdog shuts the connection's socket down when the time is up, which wakes any blocked
  read or write at once.
- `send_pinned`: sends a request to the addresses `ssrf.check_url` checked (never re-resolving
  the name), with the original `Host` header and, for https, the original name as TLS SNI and
  certificate name (httpx/httpcore honour the `sni_hostname` request extension).
- `new_client`: the HTTP client of every outbound exchange, which refuses a request outside
  `EGRESS_ALLOWLIST` before connecting (`EgressGuard`).
- Small parsers: `Retry-After`, safe response excerpts, file names.
"""

from __future__ import annotations

import heapq
import math
import os
import re
import socket
import ssl
import threading
import time
import unicodedata
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from call_downloader.net.ssrf import DEFAULT_PORTS, Target, egress_refusal

USER_AGENT = "call-downloader/0.1"
CONNECT_TIMEOUT = 10.0  # per address, so a dead first address leaves time for the next
# Request extension naming the host a pinned request's address was resolved from.
PINNED_NAME = "call_downloader.pinned_name"


class DeadlineExceeded(Exception):
    """The overall time limit of an exchange passed."""


class Deadline:
    """Use as a context manager around one HTTP exchange; pass `extensions()` to each request.

    When the time is up the watchdog thread shuts down every socket the exchange opened, so the
    blocked read or write fails immediately; `expired` tells callers that the resulting network
    error is really a timeout.
    """

    def __init__(self, seconds: float) -> None:
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise ValueError("timeout must be a positive number of seconds")
        self.seconds = float(seconds)
        self._expires_at = time.monotonic() + self.seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._closed = False

    def __enter__(self) -> Deadline:
        _watchdog().watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        # The watchdog drops a closed deadline when it comes due (no removal from its heap).
        with self._lock:
            self._closed = True
            self._sockets.clear()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self._expires_at

    def remaining(self) -> float:
        return max(0.0, self._expires_at - time.monotonic())

    def check(self) -> None:
        if self.expired:
            raise DeadlineExceeded()

    def timeout(self, per_operation: float | None = None) -> httpx.Timeout:
        """httpx timeouts that never outlast the deadline (a zero timeout would mean
        non-blocking sockets, so an expired deadline raises instead)."""
        remaining = self.remaining()
        if remaining <= 0:
            raise DeadlineExceeded()
        each = remaining if per_operation is None else min(per_operation, remaining)
        return httpx.Timeout(each, connect=min(CONNECT_TIMEOUT, remaining))

    def extensions(self, sni_hostname: str | None = None) -> dict[str, Any]:
        ext: dict[str, Any] = {"trace": self._trace}
        if sni_hostname:
            ext["sni_hostname"] = sni_hostname
        return ext

    def watch_response(self, response: httpx.Response) -> None:
        """Also watch the socket of a response (covers a connection reused from a pool)."""
        stream = response.extensions.get("network_stream")
        if stream is not None:
            self._watch(stream.get_extra_info("socket"))

    def _trace(self, event_name: str, info: dict[str, Any]) -> None:
        # httpcore reports the TCP stream, then the TLS stream that replaces it.
        if event_name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                self._watch(stream.get_extra_info("socket"))

    def _watch(self, sock: Any) -> None:
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._closed:
                return
            if self._fired:
                _shutdown(sock)
            else:
                self._sockets.append(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._fired = True
            for sock in self._sockets:
                _shutdown(sock)


class _Watchdog:
    """One thread fires every deadline of the process when it is due: a thread started and
    cancelled per exchange cost ~4% of the pipeline's CPU (`make bench`, py-spy)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Deadline]] = []
        self._seq = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._wake:
            self._seq += 1
            heapq.heappush(self._due, (deadline._expires_at, self._seq, deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="deadline-watchdog", daemon=True
                )
                self._thread.start()
            elif self._due[0][2] is deadline:
                self._wake.notify()  # due sooner than what the thread waits for

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                deadline = heapq.heappop(self._due)[2]
            try:
                deadline._fire()  # a no-op for an exchange that ended
            except Exception:  # the watchdog must outlive any one exchange
                pass


_watchdog_lock = threading.Lock()
_watchdog_instance: _Watchdog | None = None


def _watchdog() -> _Watchdog:
    global _watchdog_instance
    if _watchdog_instance is None:
        with _watchdog_lock:
            if _watchdog_instance is None:
                _watchdog_instance = _Watchdog()
    return _watchdog_instance


def _forget_watchdog() -> None:
    # A forked child has no watchdog thread: it starts its own on first use.
    global _watchdog_instance
    _watchdog_instance = None


os.register_at_fork(after_in_child=_forget_watchdog)


def _shutdown(sock: socket.socket) -> None:
    try:
        # The base-class method acts on the file descriptor only, also for an SSLSocket, so the
        # reading thread's TLS state is left alone; it just sees the connection end.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The process's verifying SSL context, built on first use (never at import).

    httpx builds a new SSL context for every client unless it is given one, and loading the CA
    bundle costs 20-30 ms of CPU each time, paid on every exchange even with plain-http peers
    (measured with `make bench`). SSLContext is safe to share between threads, and
    certificates are still verified for every connection."""
    global _ssl_context
    if _ssl_context is None:
        with _ssl_lock:
            if _ssl_context is None:
                # What httpx.Client(trust_env=False) would build for itself.
                _ssl_context = httpx.create_ssl_context(trust_env=False)
    return _ssl_context


class EgressRefused(httpx.ConnectError):
    """`EGRESS_ALLOWLIST` does not allow the request's host: no connection was attempted."""


class EgressGuard(httpx.BaseTransport):
    """Refuses every request whose host `EGRESS_ALLOWLIST` does not allow, before the wrapped
    transport opens a connection. `check_url` refuses such URLs first; this catches every
    other way out, such as the AI client, which connects to the configured `AI_URL` itself."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pinned_name = request.extensions.get(PINNED_NAME)
        port = request.url.port or DEFAULT_PORTS[request.url.scheme]
        why = egress_refusal(request.url.host, port, pinned_name)
        if why:
            raise EgressRefused(f"{request.url.host}: {why}", request=request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def new_client() -> httpx.Client:
    """A client that goes exactly where it is told: no proxies from the environment (they would
    bypass the address pinning), no redirects, nowhere outside `EGRESS_ALLOWLIST`; the shared
    SSL context.

    The downloader, the AI client and the webhook poster use a fresh client per exchange, so
    each exchange's deadline watches every socket it opens and no connection or cookie carries
    over from one destination or call to the next."""
    return httpx.Client(
        trust_env=False,
        follow_redirects=False,
        transport=EgressGuard(httpx.HTTPTransport(verify=ssl_context())),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


def send_pinned(
    client: httpx.Client,
    method: str,
    target: Target,
    deadline: Deadline,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    per_operation: float | None = None,
) -> httpx.Response:
    """Send to the checked addresses in order (the next one only when connecting failed) and
    return the streaming response; the caller closes it. Redirects are never followed."""
    if not target.addresses:
        raise ValueError("the target has no checked addresses")
    last_error: httpx.TransportError | None = None
    for address in target.addresses:
        request_headers = dict(headers or {})
        request_headers["Host"] = target.host_header
        extensions = deadline.extensions(target.host if target.scheme == "https" else None)
        extensions[PINNED_NAME] = target.host
        request = client.build_request(
            method,
            target.url_for(address),
            headers=request_headers,
            content=content,
            timeout=deadline.timeout(per_operation),
            extensions=extensions,
        )
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            last_error = exc
            if deadline.expired:
                break
            continue
        deadline.watch_response(response)
        return response
    if last_error is None:  # only when the deadline passed before any attempt
        raise DeadlineExceeded()
    raise last_error


def read_bounded(response: httpx.Response, limit: int, deadline: Deadline | None = None) -> bytes:
    """At most `limit` bytes of the (raw, undecoded) body; the rest is never read."""
    buffer = bytearray()
    for chunk in response.iter_raw(chunk_size=min(65536, max(limit, 1))):
        buffer += chunk
        if deadline is not None:
            deadline.check()
        if len(buffer) >= limit:
            break
    return bytes(buffer[:limit])


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,12}(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


def safe_excerpt(data: bytes, limit: int = 500) -> str:
    """Printable text from the start of a response body: invalid UTF-8 replaced, control
    characters (except newline and tab) turned into spaces, at most `limit` characters."""
    text = data.decode("utf-8", errors="replace")[: limit * 2]
    cleaned = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )
    return cleaned[:limit]


def sanitize_filename(name: str | None, max_length: int = 200) -> str | None:
    """A bare file name: no directories, no control or separator characters, no leading dots.
    None when nothing usable is left."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in name)
    name = " ".join(name.split()).lstrip(".").strip()
    if not name:
        return None
    if len(name) > max_length:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[: max_length - len(ext)] + ext
    return name


def filename_from_response(content_disposition: str | None, url: str) -> str | None:
    """The file name from `Content-Disposition` (`filename*` preferred), else the URL's path."""
    if content_disposition:
        msg = Message()
        msg["content-disposition"] = content_disposition
        try:
            found = msg.get_filename()
        except (ValueError, LookupError, UnicodeError):
            found = None
        cleaned = sanitize_filename(found)
        if cleaned:
            return cleaned
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return sanitize_filename(unquote(path.rsplit("/", 1)[-1], errors="replace"))
