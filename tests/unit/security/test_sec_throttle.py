"""Login throttle against the real Redis, and its local fallback when Redis is unreachable."""

from __future__ import annotations

import uuid

import pytest
import redis

from call_downloader.http.errors import ApiError
from call_downloader.security.throttle import LoginThrottle


@pytest.fixture
def real_redis():
    import os

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = f"throttle-test-{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for k in client.scan_iter(f"{prefix}:*"):
        client.delete(k)
    client.close()


def make(real_redis, **kw) -> LoginThrottle:
    client, prefix = real_redis
    return LoginThrottle(redis_factory=lambda: client,
                         key_factory=lambda *parts: ":".join((prefix, *parts)), **kw)


def test_account_locked_after_limit_with_retry_after(real_redis):
    t = make(real_redis, max_failures_per_account=3, max_failures_per_address=100,
             window_seconds=600)
    for _ in range(3):
        t.check("alice", "10.1.1.1")
        t.register_failure("alice", "10.1.1.1")
    wait = t.retry_after("alice", "10.1.1.1")
    assert wait is not None and 0 < wait <= 600
    with pytest.raises(ApiError) as err:
        t.check("Alice", "10.9.9.9")  # same account (case-insensitive), any address
    assert err.value.status == 429
    assert 0 < int(err.value.headers["Retry-After"]) <= 600
    t.check("bob", "10.1.1.1")  # other accounts from that address are fine


def test_address_locked_across_accounts(real_redis):
    t = make(real_redis, max_failures_per_account=100, max_failures_per_address=4)
    for i in range(4):
        t.register_failure(f"user{i}", "10.2.2.2")
    with pytest.raises(ApiError) as err:
        t.check("someone-new", "10.2.2.2")
    assert err.value.status == 429
    t.check("someone-new", "10.2.2.3")


def test_success_clears_the_account_but_not_the_address(real_redis):
    t = make(real_redis, max_failures_per_account=3, max_failures_per_address=5)
    for _ in range(2):
        t.register_failure("carol", "10.3.3.3")
    t.register_success("carol", "10.3.3.3")
    for _ in range(2):
        t.register_failure("carol", "10.3.3.3")
    t.check("carol", "10.3.3.3")  # 2 account failures since success: allowed
    t.register_failure("carol", "10.3.3.3")  # address: 5 failures in total
    with pytest.raises(ApiError):
        t.check("dave", "10.3.3.3")


def test_counters_have_an_expiry(real_redis):
    client, prefix = real_redis
    t = make(real_redis, window_seconds=123)
    t.register_failure("erin", "10.4.4.4")
    keys = list(client.scan_iter(f"{prefix}:*"))
    assert len(keys) == 2
    for k in keys:
        assert 0 < client.ttl(k) <= 123
    # the submitted username is not stored in clear
    assert not any(b"erin" in k for k in keys)


class _DownRedis:
    def __getattr__(self, name):
        raise redis.ConnectionError("redis is down")


def test_redis_down_falls_back_to_local_counters():
    t = LoginThrottle(max_failures_per_account=2, max_failures_per_address=50,
                      redis_factory=lambda: _DownRedis(), key_factory=lambda *p: ":".join(p))
    t.check("frank", "10.5.5.5")
    t.register_failure("frank", "10.5.5.5")
    t.register_failure("frank", "10.5.5.5")
    with pytest.raises(ApiError) as err:
        t.check("frank", "10.5.5.5")
    assert err.value.status == 429 and int(err.value.headers["Retry-After"]) > 0
    t.register_success("frank", "10.5.5.5")
    t.check("frank", "10.5.5.5")


def test_local_counters_are_bounded():
    from call_downloader.security.throttle import _MemoryCounters

    m = _MemoryCounters(max_entries=10)
    for i in range(100):
        m.incr(f"k{i}", 60)
    assert len(m._items) <= 10
    assert m.get("k99")[0] == 1
