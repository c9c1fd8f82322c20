"""Retry delays, Retry-After parsing, excerpts, file names and the deadline object."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from call_downloader.net.backoff import backoff_delay, retries_exhausted
from call_downloader.net.transport import (
    Deadline,
    parse_retry_after,
    safe_excerpt,
    sanitize_filename,
)

DELAYS = (5.0, 300.0, 1800.0)


class Fixed:
    """An rng whose uniform() always answers the low or the high end."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(("attempt", "base"), [(1, 5.0), (2, 300.0), (3, 1800.0), (9, 1800.0)])
def test_backoff_follows_the_schedule_within_the_jitter(attempt: int, base: float) -> None:
    assert backoff_delay(attempt, DELAYS, rng=Fixed(False)) == pytest.approx(base * 0.8)
    assert backoff_delay(attempt, DELAYS, rng=Fixed(True)) == pytest.approx(base * 1.2)
    rng = random.Random(attempt)
    samples = [backoff_delay(attempt, DELAYS, rng=rng) for _ in range(500)]
    assert all(base * 0.8 <= s <= base * 1.2 for s in samples)
    assert len(set(samples)) > 400  # actually jittered


def test_backoff_honours_retry_after() -> None:
    assert backoff_delay(1, DELAYS, retry_after=60, rng=Fixed(True)) == 60
    # A Retry-After shorter than the schedule does not shorten it.
    assert backoff_delay(2, DELAYS, retry_after=10, rng=Fixed(False)) == pytest.approx(240)
    # An absurd Retry-After is capped at an hour, but never below the configured delay.
    assert backoff_delay(1, DELAYS, retry_after=10**9, rng=Fixed(False)) == 3600
    assert backoff_delay(1, (36000.0,), retry_after=10**9, rng=Fixed(False)) == 28800
    assert backoff_delay(1, DELAYS, retry_after=500, max_retry_after=100, rng=Fixed(False)) == 100
    for junk in (-5.0, math.nan, math.inf, 0.0):
        assert backoff_delay(1, DELAYS, retry_after=junk, rng=Fixed(False)) == pytest.approx(4)


def test_backoff_edge_cases() -> None:
    assert backoff_delay(1, (), rng=Fixed(True)) == 0
    assert backoff_delay(1, (), retry_after=7, rng=Fixed(True)) == 7
    assert backoff_delay(1, (0.0,), rng=Fixed(True)) == 0
    assert backoff_delay(1, DELAYS, jitter=0, rng=random) == 5
    with pytest.raises(ValueError):
        backoff_delay(0, DELAYS)
    with pytest.raises(ValueError):
        backoff_delay(1, DELAYS, jitter=1.5)


def test_retries_exhausted() -> None:
    assert [retries_exhausted(n, DELAYS) for n in range(1, 6)] == [False, False, False, True, True]


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 12:02:00 GMT", 120.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("-1", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("1e9999", None),
        ("Thu, 99 Foo 2026 12:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_safe_excerpt() -> None:
    assert safe_excerpt(b"hello") == "hello"
    assert safe_excerpt("é".encode() * 600) == "é" * 500
    assert safe_excerpt(b"a\x00b\x1bc\r\nd\te") == "a b c \nd\te"
    assert safe_excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert safe_excerpt(b"x" * 1000, limit=10) == "x" * 10


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("call.wav", "call.wav"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\rec.mp3", "rec.mp3"),
        ("a\x00b\r\nc.mp3", "a b c.mp3"),
        ("  spaced   name .mp3 ", "spaced name .mp3"),
        ("...hidden", "hidden"),
        ("..", None),
        ("/", None),
        ("", None),
        (None, None),
        ("a" * 300 + ".flac", "a" * 195 + ".flac"),
    ],
)
def test_sanitize_filename(name: str | None, expected: str | None) -> None:
    assert sanitize_filename(name) == expected


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_deadline_rejects_nonsense(seconds: float) -> None:
    with pytest.raises(ValueError):
        Deadline(seconds)


def test_deadline_remaining_and_timeouts() -> None:
    with Deadline(30) as deadline:
        assert not deadline.expired
        assert 0 < deadline.remaining() <= 30
        timeout = deadline.timeout(per_operation=5)
        assert timeout.read == 5 and timeout.connect <= 10
        deadline.check()


def test_one_watchdog_fires_deadlines_in_time_order_without_a_thread_each() -> None:
    """A socket pair per deadline: the watchdog shuts the socket down when its deadline is due,
    the sooner one first even when it was registered last, and ended exchanges are left
    alone."""
    import socket
    import threading
    import time

    pairs = [socket.socketpair() for _ in range(3)]
    try:
        threads_before = threading.active_count()
        late, soon, ended = Deadline(30), Deadline(0.2), Deadline(0.1)
        for deadline, (ours, _) in zip((late, soon, ended), pairs, strict=True):
            deadline.__enter__()
            deadline._watch(ours)
        ended.__exit__(None, None, None)  # finished before it was due
        # At most the one watchdog thread (already running if an earlier test used it).
        assert threading.active_count() <= threads_before + 1
        pairs[1][0].settimeout(10)  # a watchdog that never fires fails here
        assert pairs[1][0].recv(1) == b""  # shut down by the watchdog
        assert soon._fired
        time.sleep(0.2)
        assert not late.expired and not late._fired
        assert not ended._fired  # closed deadlines are skipped
        pairs[0][0].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs[0][0].recv(1)  # the late one's socket is still open and idle
        late.__exit__(None, None, None)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
