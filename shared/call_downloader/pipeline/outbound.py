"""HTTP clients for the stages' outgoing requests (the AI service, the destinations).

The stages use a fresh client per exchange (so each exchange's deadline watches every socket
it opens, and no connection or cookie carries over from one destination or call to the next).
httpx builds a new SSL context for every client unless it is given one, and loading the CA
bundle costs 20-30 ms of CPU each time, paid twice per call even for plain-http peers
(measured with `make bench`). One context per process is shared instead: SSLContext is safe to
share between threads, and certificates are still verified for every connection.
"""

from __future__ import annotations

import ssl
import threading

import httpx

from call_downloader.net.transport import USER_AGENT

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The process's verifying SSL context, built on first use (never at import)."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                # What httpx.Client(trust_env=False) would build for itself.
                _context = httpx.create_ssl_context(trust_env=False)
    return _context


def new_client() -> httpx.Client:
    """A client that goes exactly where it is told: no proxies from the environment (they would
    bypass address pinning), no redirects; the shared SSL context."""
    return httpx.Client(
        trust_env=False,
        follow_redirects=False,
        verify=ssl_context(),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )
