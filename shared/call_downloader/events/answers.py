"""What a CloudEvent function answers, and what whoever delivered the event does next
(SPEC 3.5a). The one table for every way an event reaches a function: functions-framework
behind a Knative RabbitmqSource or the OpenFaaS connector, the dispatchers posting over HTTP
(compose, `platform: external`) and the `make run` dispatcher calling it in-process.

| outcome of the handler                      | answer                  | the dispatcher    |
| ------------------------------------------- | ----------------------- | ----------------- |
| returned: handled, skipped as a duplicate,  | 200                     | acks              |
| or settled for good (recorded on the call)  |                         |                   |
| malformed event (`MalformedEvent`, the      | 400                     | dead-letters now  |
| CloudEvents SDK refused it)                 |                         |                   |
| throttled (`Throttled`; no database         | 429 + Retry-After       | retries later     |
| connection free in time)                    |                         |                   |
| anything else (database, Redis, RabbitMQ)   | 503 + Retry-After       | retries later     |

The eventing-rabbitmq adapter retries only the answers the CloudEvents Go SDK calls retriable
(`RETRIABLE_STATUSES`, its `defaultRetriableErrors`) and rejects the message to the dead-letter
queue on any other; a 500 (functions-framework's answer to an exception) would dead-letter a
database blip at once, so no outcome maps to it. Waits longer than a blip belong in the
product's scheduled retries (outbox events due later), which the handlers settle with a 2xx.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# cloudevents/sdk-go v2 protocol/http `defaultRetriableErrors`: what the RabbitmqSource adapter
# (and our dispatchers) retry. Every other non-2xx answer dead-letters the event at once.
RETRIABLE_STATUSES = frozenset({404, 413, 425, 429, 502, 503, 504})
# Seconds a transient failure asks to wait: a database or broker blip, then the next try.
TRANSIENT_RETRY_AFTER = 5
THROTTLED_RETRY_AFTER = 2


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str = ""
    retry_after: int | None = None

    @property
    def settled(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retriable(self) -> bool:
        return self.status in RETRIABLE_STATUSES

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


HANDLED = Answer(200, "handled")


class Throttled(Exception):
    """The function cannot take this event now (too much at once): ask again later."""

    def __init__(self, reason: str, retry_after: int = THROTTLED_RETRY_AFTER) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _is_malformed(exc: BaseException) -> bool:
    from call_downloader.events.types import MalformedEvent

    if isinstance(exc, MalformedEvent):
        return True
    sdk = sys.modules.get("cloudevents.exceptions")  # loaded whenever an event was parsed
    return sdk is not None and isinstance(exc, sdk.GenericException)


def _is_throttled(exc: BaseException) -> bool:
    if isinstance(exc, Throttled):
        return True
    # The engine's pool had no connection free within its timeout: this instance has more
    # events in flight than connections; another instance (or a later try) can take it.
    sa = sys.modules.get("sqlalchemy.exc")
    return sa is not None and isinstance(exc, sa.TimeoutError)


def answer_for(exc: BaseException | None) -> Answer:
    """The answer to a handler that returned (None) or raised `exc`."""
    if exc is None:
        return HANDLED
    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    if _is_malformed(exc):
        return Answer(400, f"malformed event: {text}")
    if _is_throttled(exc):
        wait = getattr(exc, "retry_after", None) or THROTTLED_RETRY_AFTER
        return Answer(429, f"throttled: {text}", wait)
    return Answer(503, f"transient failure: {text}", TRANSIENT_RETRY_AFTER)


def answer_from_http(status: int, retry_after: str | None, reason: str = "") -> Answer:
    """A function's HTTP answer, as the dispatcher posting to it reads it."""
    seconds = None
    if retry_after:
        from call_downloader.net.transport import parse_retry_after

        parsed = parse_retry_after(retry_after)
        seconds = None if parsed is None else max(0, round(parsed))
    return Answer(status, reason or f"function answered {status}", seconds)


def unreachable(exc: BaseException) -> Answer:
    """No answer at all (connection refused, timeout): retried, as the adapter does."""
    return Answer(503, f"function unreachable: {type(exc).__name__}: {str(exc)[:300]}")


def disposition(answer: Answer, attempt: int, max_attempts: int) -> str:
    """What a dispatcher does with an answer to its `attempt`-th try (1-based):
    "ok" (ack), "retry" (later, no sooner than Retry-After), "dead_letter", or "poison"
    (dead-lettered at once: retrying cannot help)."""
    if answer.settled:
        return "ok"
    if not answer.retriable:
        return "poison"
    return "retry" if attempt < max_attempts else "dead_letter"
