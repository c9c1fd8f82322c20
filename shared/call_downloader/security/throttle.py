"""Login throttling: failed logins are counted per account and per client address in Redis
(fixed windows); once a counter reaches its limit, logins for that account or from that
address answer 429 with `Retry-After` until the window ends.

Counters are keyed by the *submitted* username, whether or not such a user exists, so the
throttle behaves identically for real and made-up accounts. A success clears the account's
counter but not the address's (one valid account must not reset an attacker's budget).

If Redis is unavailable the counters fall back to process-local memory with the same limits:
logins keep working and brute force stays bounded (per process instead of per deployment).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from call_downloader.http.errors import ApiError

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0


class _MemoryCounters:
    """Fixed-window counters for when Redis is down; bounded so it cannot grow without limit."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[int, float]] = {}
        self._max = max_entries

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        item = self._items.get(key)
        if item is not None and item[1] <= now:
            del self._items[key]
            return None
        return item

    def incr(self, key: str, window: int) -> None:
        now = time.monotonic()
        with self._lock:
            item = self._live(key, now)
            if item is None:
                if len(self._items) >= self._max:
                    self._evict(now)
                self._items[key] = (1, now + window)
            else:
                self._items[key] = (item[0] + 1, item[1])

    def _evict(self, now: float) -> None:
        for k in [k for k, (_, exp) in self._items.items() if exp <= now]:
            del self._items[k]
        while len(self._items) >= self._max:  # oldest first (dicts keep insertion order)
            del self._items[next(iter(self._items))]

    def get(self, key: str) -> tuple[int, int]:
        """(count, seconds left) of a live counter, else (0, 0)."""
        now = time.monotonic()
        with self._lock:
            item = self._live(key, now)
        if item is None:
            return 0, 0
        return item[0], max(1, int(item[1] - now + 0.999))

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def _default_redis() -> Any:
    from call_downloader.storage.redis_client import get_redis

    return get_redis()


def _default_key(*parts: str) -> str:
    from call_downloader.storage.redis_client import key

    return key(*parts)


class LoginThrottle:
    def __init__(
        self,
        max_failures_per_account: int = 5,
        max_failures_per_address: int = 20,
        window_seconds: int = 900,
        redis_factory: Callable[[], Any] = _default_redis,
        key_factory: Callable[..., str] = _default_key,
    ) -> None:
        self.max_account = max_failures_per_account
        self.max_address = max_failures_per_address
        self.window = window_seconds
        self._redis = redis_factory
        self._key = key_factory
        self._memory = _MemoryCounters()
        # After a Redis error, go straight to memory for a few seconds rather than paying a
        # connection timeout on every step of every login.
        self._redis_down_until = 0.0

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        # Hashed: usernames typed at a login form are arbitrary text (sometimes a password).
        account = hashlib.sha256(username.strip().lower().encode("utf-8")).hexdigest()[:32]
        return self._key("auth", "fail", "acct", account), self._key("auth", "fail", "ip", address)

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _read(self, key: str) -> tuple[int, int]:
        if not self._redis_ok():
            return self._memory.get(key)
        try:
            client = self._redis()
            pipe = client.pipeline(transaction=False)
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = pipe.execute()
            count = int(count or 0)
            if count and ttl < 0:  # no expiry (should not happen): give it one
                client.expire(key, self.window)
                ttl = self.window
            return count, max(int(ttl), 1) if count else 0
        except Exception as exc:  # noqa: BLE001 - Redis down: documented local fallback
            self._warn(exc)
            return self._memory.get(key)

    def _incr(self, key: str) -> None:
        if not self._redis_ok():
            self._memory.incr(key, self.window)
            return
        try:
            pipe = self._redis().pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, self.window, nx=True)  # the window starts at the first failure
            pipe.execute()
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)
            self._memory.incr(key, self.window)

    def _delete(self, key: str) -> None:
        self._memory.delete(key)
        if not self._redis_ok():
            return
        try:
            self._redis().delete(key)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        if type(exc).__name__ != "CacheDisabled":  # embedded mode without Redis: expected
            log.warning("login throttle: Redis unavailable (%s); using local counters",
                        type(exc).__name__)

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until a login for this account/address may be tried again; None if allowed."""
        account_key, address_key = self._keys(username, address)
        waits = []
        count, ttl = self._read(account_key)
        if count >= self.max_account:
            waits.append(ttl)
        count, ttl = self._read(address_key)
        if count >= self.max_address:
            waits.append(ttl)
        return max(waits) if waits else None

    def check(self, username: str, address: str) -> None:
        """Raise ApiError 429 (with Retry-After) when this login attempt must wait."""
        wait = self.retry_after(username, address)
        if wait is not None:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; try again later",
                headers={"Retry-After": str(wait)},
            )

    def register_failure(self, username: str, address: str) -> None:
        for key in self._keys(username, address):
            self._incr(key)

    def register_success(self, username: str, address: str) -> None:
        self._delete(self._keys(username, address)[0])


_default: LoginThrottle | None = None
_default_lock = threading.Lock()


def get_throttle() -> LoginThrottle:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LoginThrottle()
    return _default
