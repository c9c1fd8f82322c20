"""Login throttling: a delay that grows with each failed login, never a lock-out.

Three counters are kept (in Redis, so every replica shares them):

| counter | free failures | then waits of | what it stops |
| --- | --- | --- | --- |
| account + client address | 3 | 1 s, 2 s, 4 s ... 15 min | guessing one account's password |
| client address | 20 | 1 s, 2 s, 4 s ... 15 min | one address trying many accounts |
| account, any address | 50 | 1 s, 2 s, 4 s ... 60 s | many addresses guessing one account |

A stranger's failures therefore slow down only the stranger: the real user, from another
address, meets at most the account-wide delay, which is short (the price of slowing down
guesses spread over many addresses). A counter is forgotten 15 minutes after its last failure.

An attempt **reserves** its place before the password is checked: one atomic step (a Redis
script) refuses it with 429 and `Retry-After` when a counter's delay has not passed, else
counts it as a failure and sets the next delay. A success then gives the reservation back (and
clears the account + address counter). So parallel guesses cannot all reach the password check
before the first failure is counted: of 30 at once, 3 are checked and 27 wait.

Counters are keyed by the *submitted* username (hashed: usernames typed at a login form are
arbitrary text, sometimes a password), whether or not such a user exists, so the throttle
behaves identically for real and made-up accounts.

If Redis is unavailable (or absent, in embedded mode) the same counters live in process memory,
under a lock: logins keep working and guessing stays bounded, per process instead of per
deployment.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from call_downloader.http.errors import ApiError

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0
WINDOW_SECONDS = 900


@dataclass(frozen=True)
class Schedule:
    """After `free` failures, each attempt waits `first` seconds after the last failure,
    doubling up to `longest`."""

    free: int
    first: float
    longest: float

    def delays(self) -> list[float]:
        """The wait after the n-th failure at index n-1; the last entry repeats for ever."""
        waits = [0.0] * max(self.free - 1, 0)
        wait = self.first
        while wait < self.longest:
            waits.append(wait)
            wait *= 2
        waits.append(self.longest)
        return waits


PER_ACCOUNT_AND_ADDRESS = Schedule(free=3, first=1.0, longest=900.0)
PER_ADDRESS = Schedule(free=20, first=1.0, longest=900.0)
PER_ACCOUNT = Schedule(free=50, first=1.0, longest=60.0)


def _wait_after(delays: Sequence[float], failures: int) -> float:
    return delays[min(failures, len(delays)) - 1] if failures > 0 else 0.0


# KEYS: the counters, each a hash of `n` (failures, reservations included) and `last` (when
# the last one was reserved); ARGV[1]: seconds a counter outlives its last failure;
# ARGV[1 + i]: the comma-separated delays of KEYS[i] (`Schedule.delays`). Returns "0" when the
# attempt is reserved (counted on every counter), else the seconds to wait (nothing counted).
_RESERVE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local schedules, counts, wait = {}, {}, 0
for i, key in ipairs(KEYS) do
  local delays = {}
  for d in string.gmatch(ARGV[i + 1], '[^,]+') do delays[#delays + 1] = tonumber(d) end
  schedules[i] = delays
  local n = tonumber(redis.call('HGET', key, 'n') or '0')
  counts[i] = n
  if n > 0 then
    local due = tonumber(redis.call('HGET', key, 'last') or '0') + delays[math.min(n, #delays)]
    if due - now > wait then wait = due - now end
  end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  local n = counts[i] + 1
  local delay = schedules[i][math.min(n, #schedules[i])]
  redis.call('HSET', key, 'n', n, 'last', tostring(now))
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1]) + delay))
end
return '0'
"""

# KEYS[1]: the account + address counter (deleted); KEYS[2..]: the others (one failure fewer).
_RELEASE = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if tonumber(redis.call('HGET', KEYS[i], 'n') or '0') > 0 then
    redis.call('HINCRBY', KEYS[i], 'n', -1)
  end
end
return 0
"""


class _MemoryCounters:
    """The same counters for when Redis is down; bounded so it cannot grow without limit."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        # key -> [failures, last reserved at, forgotten at]
        self._items: dict[str, list[float]] = {}
        self._max = max_entries

    def reserve(self, keys: Sequence[str], delays: Sequence[Sequence[float]]) -> float:
        now = time.monotonic()
        with self._lock:
            items = [self._live(key, now) for key in keys]
            wait = max(
                (item[1] + _wait_after(waits, int(item[0])) - now
                 for item, waits in zip(items, delays, strict=True) if item is not None),
                default=0.0,
            )  # fmt: skip
            if wait > 0:
                return wait
            for key, item, waits in zip(keys, items, delays, strict=True):
                failures = (item[0] if item is not None else 0) + 1
                if item is None and len(self._items) >= self._max:
                    self._evict(now)
                forget = now + WINDOW_SECONDS + _wait_after(waits, int(failures))
                self._items[key] = [failures, now, forget]
            return 0.0

    def release(self, cleared: str, others: Sequence[str]) -> None:
        with self._lock:
            self._items.pop(cleared, None)
            for key in others:
                item = self._items.get(key)
                if item is not None and item[0] > 0:
                    item[0] -= 1

    def _live(self, key: str, now: float) -> list[float] | None:
        item = self._items.get(key)
        if item is not None and item[2] <= now:
            del self._items[key]
            return None
        return item

    def _evict(self, now: float) -> None:
        for k in [k for k, item in self._items.items() if item[2] <= now]:
            del self._items[k]
        while len(self._items) >= self._max:  # oldest first (dicts keep insertion order)
            del self._items[next(iter(self._items))]


def _default_redis() -> Any:
    from call_downloader.storage.redis_client import get_redis

    return get_redis()


def _default_key(*parts: str) -> str:
    from call_downloader.storage.redis_client import key

    return key(*parts)


@dataclass
class Reservation:
    """A login attempt that may go ahead; `succeeded()` gives its place back."""

    throttle: LoginThrottle
    keys: tuple[str, ...]

    def succeeded(self) -> None:
        self.throttle._release(self.keys)


class LoginThrottle:
    def __init__(
        self,
        per_account_and_address: Schedule = PER_ACCOUNT_AND_ADDRESS,
        per_address: Schedule = PER_ADDRESS,
        per_account: Schedule = PER_ACCOUNT,
        redis_factory: Callable[[], Any] = _default_redis,
        key_factory: Callable[..., str] = _default_key,
    ) -> None:
        self._delays = tuple(
            tuple(s.delays()) for s in (per_account_and_address, per_address, per_account)
        )
        self._redis = redis_factory
        self._key = key_factory
        self._memory = _MemoryCounters()
        self._scripts: tuple[Any, Any] | None = None
        # After a Redis error, go straight to memory for a few seconds rather than paying a
        # connection timeout on every login.
        self._redis_down_until = 0.0

    def _keys(self, username: str, address: str) -> tuple[str, str, str]:
        account = hashlib.sha256(username.strip().lower().encode("utf-8")).hexdigest()[:32]
        return (
            self._key("auth", "delay", "acct-ip", account, address),
            self._key("auth", "delay", "ip", address),
            self._key("auth", "delay", "acct", account),
        )

    def reserve(self, username: str, address: str) -> Reservation:
        """Count this attempt as a failure before the password is checked, or raise ApiError
        429 (with Retry-After) when it must wait. Call `succeeded()` on the result when the
        password was right."""
        keys = self._keys(username, address)
        wait = self._reserve(keys)
        if wait > 0:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; wait before trying again",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return Reservation(self, keys)

    def _reserve(self, keys: tuple[str, ...]) -> float:
        if time.monotonic() >= self._redis_down_until:
            try:
                reserve, _ = self._redis_scripts()
                delays = [",".join(f"{d:g}" for d in waits) for waits in self._delays]
                return float(reserve(keys=list(keys), args=[WINDOW_SECONDS, *delays]))
            except Exception as exc:  # Redis down: the documented local fallback
                self._warn(exc)
        return self._memory.reserve(keys, self._delays)

    def _release(self, keys: tuple[str, ...]) -> None:
        self._memory.release(keys[0], keys[1:])
        if time.monotonic() < self._redis_down_until:
            return
        try:
            _, release = self._redis_scripts()
            release(keys=list(keys))
        except Exception as exc:
            self._warn(exc)

    def _redis_scripts(self) -> tuple[Any, Any]:
        if self._scripts is None:
            client = self._redis()
            self._scripts = (client.register_script(_RESERVE), client.register_script(_RELEASE))
        return self._scripts

    def _warn(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        self._scripts = None  # the client may be rebuilt meanwhile
        if type(exc).__name__ != "CacheDisabled":  # embedded mode without Redis: expected
            log.warning(
                "login throttle: Redis unavailable (%s); using local counters", type(exc).__name__
            )


_default: LoginThrottle | None = None
_default_lock = threading.Lock()


def get_throttle() -> LoginThrottle:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LoginThrottle()
    return _default
