"""Hostile-input fixtures: the HTTP functions as functions-framework test clients on the real
PostgreSQL and Redis, users of each role, and the footprint check (no partial rows, blobs or
cache entries left behind by a refused request).

Nothing here may connect to a non-loopback address: `no_outbound` replaces the pinned
connection of the downloader and the webhook sender with one that refuses anything but
127.0.0.0/8 and ::1, and records what was attempted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hostile_helpers import Person, function_client, is_loopback, make_person


@pytest.fixture
def clients(db) -> Iterator[dict[str, Any]]:
    from call_downloader.security import api, throttle
    from call_downloader.storage.redis_client import reset_redis

    reset_redis()
    api._bootstrapped = False  # each test's database starts empty
    throttle._default = None
    yield {
        "ingest": function_client("ingest", "ingest"),
        "calls": function_client("calls", "calls"),
        "auth": function_client("auth", "auth"),
    }
    _drop_namespace_keys()
    reset_redis()


def _drop_namespace_keys() -> None:
    from call_downloader.storage.redis_client import get_redis, key

    client = get_redis()
    for k in client.scan_iter(key("*")):
        client.delete(k)


@pytest.fixture
def people(clients) -> dict[str, Person]:
    return {role: make_person(role) for role in ("admin", "operator", "viewer", "source")}


@pytest.fixture
def no_outbound(monkeypatch) -> list[str]:
    """Refuse (and record) any pinned connection that is not to loopback."""
    from call_downloader.net import download, ssrf, transport, webhooks

    attempted: list[str] = []
    real = transport.send_pinned

    def guarded(client, method, target, *args, **kwargs):
        for address in target.addresses:
            if not is_loopback(str(address)):
                attempted.append(f"{method} {target.host} -> {address}")
                raise AssertionError(f"tried to connect to {address}")
        return real(client, method, target, *args, **kwargs)

    def no_dns(host, port):
        # A name lookup would query this machine's (non-loopback) DNS server: never in tests.
        attempted.append(f"resolve {host}")
        raise OSError("name resolution is disabled in hostile-input tests")

    for module in (transport, download, webhooks):
        if hasattr(module, "send_pinned"):
            monkeypatch.setattr(module, "send_pinned", guarded)
    monkeypatch.setattr(ssrf, "default_resolver", no_dns)
    return attempted
