"""The process's Redis client, built on first use. Redis is a cache only: short timeouts so
that Redis being down slows work down a little and never blocks or fails it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from call_downloader.config import get_settings

if TYPE_CHECKING:
    import redis  # imported on first use: a large package, and a cold start counts

_lock = threading.Lock()
_client: redis.Redis | None = None


class CacheDisabled(RuntimeError):
    """CACHE=none: there is no Redis; callers treat it like Redis being down."""


def get_redis() -> redis.Redis:
    global _client
    if get_settings().cache == "none":
        raise CacheDisabled("no cache configured (CACHE=none)")
    if _client is None:
        with _lock:
            if _client is None:
                import redis

                _client = redis.Redis.from_url(
                    get_settings().redis_url,
                    socket_connect_timeout=0.5,
                    socket_timeout=2.0,
                    health_check_interval=30,
                )
    return _client


def reset_redis() -> None:
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None


def key(*parts: str) -> str:
    """Namespaced key: several deployments or test runs can share one Redis."""
    return ":".join((get_settings().event_namespace, *parts))
