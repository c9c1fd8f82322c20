"""The login delay (issue 16, items 1 and 4), on the real Redis and on its local fallback:
a delay that grows per account + address, per address and per account, never a lock-out of an
account by strangers; attempts reserved atomically before the password is checked."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from at_once import at_once

from call_downloader.http.errors import ApiError
from call_downloader.security import throttle as throttle_module
from call_downloader.security.throttle import LoginThrottle, Schedule


class _DownRedis:
    def __getattr__(self, name):
        raise redis.ConnectionError("redis is down")


@pytest.fixture(params=["redis", "memory"])
def backend(request):
    """(client or None, key prefix): the real Redis, or Redis down (the local counters)."""
    import os

    if request.param == "memory":
        yield None, f"mem-{uuid.uuid4().hex[:8]}"
        return
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = f"throttle-test-{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for k in client.scan_iter(f"{prefix}:*"):
        client.delete(k)
    client.close()


# The product's free attempts with waits of minutes: no outcome depends on the machine's speed.
PAIR = Schedule(free=3, first=60, longest=3600)
ADDRESS = Schedule(free=20, first=60, longest=3600)
ACCOUNT = Schedule(free=50, first=60, longest=600)


def make(backend, **schedules) -> LoginThrottle:
    client, prefix = backend
    schedules = {
        "per_account_and_address": PAIR, "per_address": ADDRESS, "per_account": ACCOUNT,
        **schedules,
    }  # fmt: skip
    return LoginThrottle(
        redis_factory=(lambda: client) if client is not None else (lambda: _DownRedis()),
        key_factory=lambda *parts: ":".join((prefix, *parts)),
        **schedules,
    )


def refused(t: LoginThrottle, username: str, address: str) -> int | None:
    """Retry-After of a refused attempt, None when it was reserved."""
    try:
        t.reserve(username, address)
    except ApiError as err:
        assert err.status == 429 and err.code == "too_many_attempts"
        return int(err.headers["Retry-After"])
    return None


def due_in(t: LoginThrottle, backend, key: str) -> float:
    """Seconds until the account + address counter `key` lets the next attempt through."""
    client, _ = backend
    delays = t._delays[0]
    if client is None:
        failures, last, _ = t._memory._items[key]
        return last + throttle_module._wait_after(delays, int(failures)) - time.monotonic()
    failures, last = int(client.hget(key, "n")), float(client.hget(key, "last"))
    now = client.time()
    return last + throttle_module._wait_after(delays, failures) - (now[0] + now[1] / 1e6)


def let_time_pass(t: LoginThrottle, backend, key: str) -> None:
    """As if the current delay of `key` had passed (no test sleeps through a delay)."""
    client, _ = backend
    if client is None:
        t._memory._items[key][1] = 0.0
    else:
        client.hset(key, "last", 0)


def test_schedule_doubles_after_the_free_failures():
    assert Schedule(free=3, first=1, longest=10).delays() == [0, 0, 1, 2, 4, 8, 10]
    assert Schedule(free=1, first=2, longest=2).delays() == [2]
    assert throttle_module.PER_ACCOUNT_AND_ADDRESS.delays()[:5] == [0, 0, 1, 2, 4]
    assert throttle_module.PER_ACCOUNT_AND_ADDRESS.delays()[-1] == 900


def test_three_free_failures_then_a_delay_that_grows(backend):
    t = make(backend)
    for _ in range(3):
        t.reserve("alice", "10.1.1.1")  # each reserved and never given back: a failure
    assert 0 < refused(t, "alice", "10.1.1.1") <= 60
    pair = t._keys("alice", "10.1.1.1")[0]
    assert 0 < due_in(t, backend, pair) <= 60
    waits = []
    for _ in range(4):
        let_time_pass(t, backend, pair)
        t.reserve("Alice", "10.1.1.1")  # the same account (case-insensitive)
        waits.append(round(due_in(t, backend, pair) / 60))
    assert waits == [2, 4, 8, 16]  # minutes: doubling
    assert 480 < refused(t, "alice", "10.1.1.1") <= 960


def test_a_strangers_failures_do_not_lock_the_account(backend):
    t = make(backend)
    for _ in range(10):
        refused(t, "admin", "203.0.113.66")
    assert refused(t, "admin", "203.0.113.66") is not None  # the stranger waits
    assert refused(t, "admin", "198.51.100.7") is None  # the admin, elsewhere, does not
    assert refused(t, "bob", "203.0.113.66") is None  # other accounts from there neither


def test_parallel_attempts_reserve_before_any_is_checked(backend):
    """30 at once for one account: only the free three go on to the password check."""
    t = make(backend)
    t.reserve("warmup", "10.9.9.9").succeeded()  # scripts loaded, connection open
    outcomes = at_once(30, lambda: refused(t, "carol", "10.2.2.2"))
    assert outcomes.count(None) == 3
    assert len([o for o in outcomes if o is not None]) == 27


def test_a_success_gives_the_reservation_back_and_clears_the_pair(backend):
    t = make(backend)
    t.reserve("dave", "10.3.3.3")
    t.reserve("dave", "10.3.3.3")
    t.reserve("dave", "10.3.3.3").succeeded()  # the right password
    for _ in range(3):
        t.reserve("dave", "10.3.3.3")  # three free failures again
    assert refused(t, "dave", "10.3.3.3") is not None


def test_the_address_counter_spans_accounts_and_a_success_does_not_reset_it(backend):
    t = make(backend, per_address=Schedule(free=5, first=60, longest=900))
    for i in range(4):
        t.reserve(f"user{i}", "10.4.4.4")
    t.reserve("own-account", "10.4.4.4").succeeded()  # given back, not a reset
    t.reserve("user4", "10.4.4.4")  # the fifth failure
    assert refused(t, "someone-new", "10.4.4.4") is not None
    assert refused(t, "someone-new", "10.4.4.5") is None


def test_the_account_counter_spans_addresses_with_a_short_delay(backend):
    t = make(backend, per_account=Schedule(free=4, first=60, longest=60))
    for i in range(4):
        t.reserve("erin", f"10.5.5.{i}")
    wait = refused(t, "erin", "10.5.5.200")
    assert wait is not None and wait <= 60


def test_counters_expire_and_never_hold_the_username():
    import os

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = f"throttle-test-{uuid.uuid4().hex[:8]}"
    try:
        make((client, prefix)).reserve("frank", "10.6.6.6")
        keys = list(client.scan_iter(f"{prefix}:*"))
        assert len(keys) == 3
        for k in keys:
            assert 0 < client.ttl(k) <= throttle_module.WINDOW_SECONDS + 1
        assert not any(b"frank" in k for k in keys)
    finally:
        for k in client.scan_iter(f"{prefix}:*"):
            client.delete(k)
        client.close()


def test_redis_refusing_connections_falls_back_to_local_counters():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    down = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    t = make((down, "down"))
    for _ in range(3):
        t.reserve("grace", "10.7.7.7")
    assert refused(t, "grace", "10.7.7.7") is not None
    t.reserve("henry", "10.7.7.8").succeeded()


def test_local_counters_are_bounded():
    from call_downloader.security.throttle import _MemoryCounters

    m = _MemoryCounters(max_entries=10)
    for i in range(100):
        m.reserve([f"k{i}"], [[0.0]])
    assert len(m._items) <= 10
    assert m._items["k99"][0] == 1
