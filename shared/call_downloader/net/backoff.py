"""Retry delays for the AI calls and the webhook deliveries (SPEC 3.2, 3.3).

The configured delays (`AI_RETRY_DELAYS`, `DELIVERY_RETRY_DELAYS`) are the schedule; each delay
gets jitter so that many calls failing together do not retry together, and a `Retry-After`
from the other side is honoured (never retry earlier than asked, within reason).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Protocol


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


DEFAULT_JITTER = 0.2  # each delay lands in [0.8, 1.2] x its configured value: same mean
MAX_RETRY_AFTER = 3600.0  # a Retry-After is honoured up to an hour; beyond that it is capped


def backoff_delay(
    attempt: int,
    delays: Sequence[float],
    retry_after: float | None = None,
    rng: _Uniform | Any = random,
    *,
    jitter: float = DEFAULT_JITTER,
    max_retry_after: float = MAX_RETRY_AFTER,
) -> float:
    """Seconds to wait before the next try, after `attempt` failed attempts (1 = the first).

    Uses `delays[attempt - 1]` (the last delay once past the end; deciding when to give up is
    the caller's: typically after `len(delays)` retries), scaled by a random factor in
    [1 - jitter, 1 + jitter], and never less than `retry_after` capped at `max_retry_after`.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts and starts at 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    base = float(delays[min(attempt, len(delays)) - 1]) if delays else 0.0
    delay = base * rng.uniform(1.0 - jitter, 1.0 + jitter) if base > 0 else 0.0
    if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(retry_after, max_retry_after))
    return max(0.0, delay)


def retries_exhausted(failed_attempts: int, delays: Sequence[float]) -> bool:
    """True once `failed_attempts` used up the schedule (1 first try + one retry per delay)."""
    return failed_attempts > len(delays)
