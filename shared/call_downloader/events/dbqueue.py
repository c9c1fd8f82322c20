"""The embedded event transport: the function queues as rows of the database.

Used when no RabbitMQ is configured or answering (embedded `make run`, issue 9). It keeps the
broker's semantics: one queue per consuming function (the same SUBSCRIPTIONS), delivery to
one worker at a time (a lease), ack after success, delayed retries over the same tiers, and a
dead-letter state after the last attempt. Being in the database, messages survive restarts.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import QueueMessage
from call_downloader.events import types as ev
from call_downloader.events.answers import disposition
from call_downloader.events.broker import RETRY_TIERS_SECONDS, SUBSCRIPTIONS
from call_downloader.events.dispatcher import Invoker, invoke
from call_downloader.observability.context import bind, in_scope
from call_downloader.observability.instrument import dispatched, event_fields

log = logging.getLogger(__name__)

# Wakes the consumers of this process as soon as something is enqueued.
_enqueued = threading.Event()
LEASE = timedelta(minutes=15)


def _now() -> datetime:
    return datetime.now(UTC)


def retry_delay(attempt: int) -> int:
    return RETRY_TIERS_SECONDS[min(attempt, len(RETRY_TIERS_SECONDS)) - 1]


class DatabasePublisher:
    """Stands in for `broker.Publisher`: routes an event to the queues of its subscribers."""

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, object] | None = None,
        message_id: str | None = None,
    ) -> None:
        functions = [name for name, types in SUBSCRIPTIONS.items() if routing_key in types]
        if not functions:
            raise RuntimeError(f"no queue is bound to {routing_key}")
        with unit_of_work() as session:
            for function in functions:
                session.add(
                    QueueMessage(
                        function=function,
                        event_id=message_id or str(uuid.uuid4()),
                        body=body,
                        attempts=0,
                        available_at=_now(),
                        dead=False,
                    )
                )
        _enqueued.set()

    def close(self) -> None:
        pass


def release_all_leases() -> None:
    """At start-up of the single embedded process: work that was in flight is due again."""
    with unit_of_work() as session:
        session.execute(update(QueueMessage).values(claimed_until=None))


class DatabaseDispatcher:
    """Stands in for `dispatcher.Dispatcher` (same start/stop/alive)."""

    def __init__(
        self,
        invokers: dict[str, Invoker],
        *,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        settings = get_settings()
        self.invokers = invokers
        self.concurrency = concurrency or settings.dispatcher_concurrency
        self.max_attempts = max_attempts or settings.dispatcher_max_attempts
        self.poll_seconds = poll_seconds
        self.stopped = threading.Event()
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="dbqueue-worker")
        self._in_flight = threading.Semaphore(self.concurrency)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dbqueue-dispatch", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return not self.stopped.is_set() and self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopped.set()
        _enqueued.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=True)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                claimed = self._claim_batch()
            except Exception:
                log.warning("embedded queue unavailable; retrying", exc_info=True)
                claimed = []
                self.stopped.wait(1.0)
            for message_id in claimed:
                self._executor.submit(self._run, message_id)
            if not claimed:
                _enqueued.wait(self.poll_seconds)
                _enqueued.clear()

    def _claim_batch(self) -> list[int]:
        claimed: list[int] = []
        while self._in_flight.acquire(blocking=False):
            message_id = self._claim_one()
            if message_id is None:
                self._in_flight.release()
                break
            claimed.append(message_id)
        return claimed

    def _claim_one(self) -> int | None:
        now = _now()
        with unit_of_work() as session:
            candidates = (
                session.execute(
                    select(QueueMessage.id)
                    .where(
                        QueueMessage.function.in_(list(self.invokers)),
                        QueueMessage.dead.is_(False),
                        QueueMessage.available_at <= now,
                        or_(QueueMessage.claimed_until.is_(None), QueueMessage.claimed_until < now),
                    )
                    .order_by(QueueMessage.available_at, QueueMessage.id)
                    .limit(5)
                )
                .scalars()
                .all()
            )
            for message_id in candidates:
                # Compare-and-set: only one worker wins a message.
                won = session.execute(
                    update(QueueMessage)
                    .where(
                        QueueMessage.id == message_id,
                        or_(QueueMessage.claimed_until.is_(None), QueueMessage.claimed_until < now),
                    )
                    .values(claimed_until=now + LEASE)
                ).rowcount
                if won:
                    return message_id
        return None

    def _run(self, message_id: int) -> None:
        try:
            self._process(message_id)
        except Exception:
            log.exception("embedded queue bookkeeping failed; the message is retried later")
        finally:
            self._in_flight.release()
            _enqueued.set()  # a free worker: look for more

    @in_scope
    def _process(self, message_id: int) -> None:
        with unit_of_work() as session:
            message = session.get(QueueMessage, message_id)
            if message is None:
                return
            function, body, attempts = message.function, bytes(message.body), message.attempts
        started, event = time.monotonic(), None
        try:
            event = ev.parse_structured(body)
        except ev.MalformedEvent as exc:
            self._dead_letter(message_id, f"malformed: {exc}")
            dispatched(function, None, "poison")
            return
        bind(function=function, **event_fields(event))  # this message's log lines
        answer = invoke(self.invokers[function], event)
        attempt = attempts + 1
        outcome = disposition(answer, attempt, self.max_attempts)
        dispatched(function, event["type"], outcome, time.monotonic() - started)
        if outcome == "ok":
            with unit_of_work() as session:  # the ack
                session.execute(delete(QueueMessage).where(QueueMessage.id == message_id))
            return
        log.warning(
            "%s did not handle queued message %s (attempt %d): %d %s",
            function,
            message_id,
            attempt,
            answer.status,
            answer.reason,
        )
        if outcome != "retry":
            self._dead_letter(message_id, f"{answer.status} {answer.reason}"[:500])
            return
        delay = max(retry_delay(attempt), answer.retry_after or 0)
        with unit_of_work() as session:
            session.execute(
                update(QueueMessage)
                .where(QueueMessage.id == message_id)
                .values(
                    attempts=attempt,
                    claimed_until=None,
                    available_at=_now() + timedelta(seconds=delay),
                )
            )

    @staticmethod
    def _dead_letter(message_id: int, why: str) -> None:
        with unit_of_work() as session:
            session.execute(
                update(QueueMessage)
                .where(QueueMessage.id == message_id)
                .values(dead=True, dead_reason=why, claimed_until=None)
            )


def dead_letters(function: str | None = None) -> list[dict[str, Any]]:
    with unit_of_work() as session:
        query = select(QueueMessage).where(QueueMessage.dead.is_(True))
        if function:
            query = query.where(QueueMessage.function == function)
        return [
            {"id": m.id, "function": m.function, "event_id": m.event_id, "reason": m.dead_reason}
            for m in session.execute(query).scalars()
        ]
