"""Run one thing from many threads released at the same moment (races, parallel guesses)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def at_once(count: int, fn: Callable[[], T]) -> list[T]:
    """`fn()` from `count` threads that start together; the results, in completion order."""
    start = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        result = fn()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
