"""RabbitMQ: the topology, connections and a confirming publisher (pika).

Topology (names prefixed with EVENT_NAMESPACE, `calldl` by default):
- `<ns>.events`: durable topic exchange; routing key = CloudEvent type.
- `<ns>.<function>`: durable quorum queue per consuming function, bound to its event types;
  a delivery limit dead-letters a message that keeps crashing its consumer. The dead-letter
  route and the limit are the queue's arguments, or (RABBITMQ_DEAD_LETTERING=policy) a
  RabbitMQ policy per queue, so that a consumer declaring the queue with no arguments
  (the OpenFaaS connector) declares the same queue.
- `<ns>.<function>.retry.<N>s`: delay tiers (message TTL, dead-lettered back into the
  function's queue through the default exchange): the dispatcher's retries with backoff.
- `<ns>.<function>.dlq`: dead letters, after the last attempt or for poison messages.

pika connections are not thread-safe: each thread uses its own (see `Publisher`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from call_downloader.config import get_settings
from call_downloader.events import types as ev

# Which events each consuming function gets (the same table as docs/architecture.md and the
# Knative triggers in k8s/).
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "analyze-duration": (ev.CALL_RECEIVED,),
    "call-ai": (ev.CALL_ANALYZED, ev.AI_RETRY),
    "deliver": (ev.CALL_PROCESSED, ev.DELIVERY_DUE),
}
RETRY_TIERS_SECONDS = (1, 5, 30, 120, 600)
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Policy:
    """A RabbitMQ policy the topology relies on (RABBITMQ_DEAD_LETTERING=policy)."""

    name: str
    pattern: str
    definition: dict[str, Any]

    def rabbitmqctl(self, vhost: str) -> list[str]:
        return [
            "rabbitmqctl", "set_policy", "-p", vhost, "--apply-to", "queues",
            self.name, self.pattern, json.dumps(self.definition, sort_keys=True),
        ]  # fmt: skip


@dataclass(frozen=True)
class Topology:
    namespace: str
    dead_lettering: str = "arguments"  # or "policy"

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.events"

    def queue(self, function: str) -> str:
        return f"{self.namespace}.{function}"

    def retry_queue(self, function: str, seconds: int) -> str:
        return f"{self.namespace}.{function}.retry.{seconds}s"

    def dead_letter_queue(self, function: str) -> str:
        return f"{self.namespace}.{function}.dlq"

    def retry_tier(self, attempt: int) -> int:
        """Delay before retry number `attempt` (1-based): grows, then stays at the last tier."""
        return RETRY_TIERS_SECONDS[min(attempt, len(RETRY_TIERS_SECONDS)) - 1]

    def _dead_lettering(self, function: str) -> dict[str, Any]:
        return {
            "delivery-limit": DELIVERY_LIMIT,
            "dead-letter-exchange": "",
            "dead-letter-routing-key": self.dead_letter_queue(function),
        }

    def queue_arguments(self, function: str) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.dead_lettering == "arguments":
            arguments.update({f"x-{k}": v for k, v in self._dead_lettering(function).items()})
        return arguments

    def policies(self) -> list[Policy]:
        """The policies RABBITMQ_DEAD_LETTERING=policy needs: one per function queue, matching
        its exact name."""
        return [
            Policy(
                name=f"{self.queue(function)}.dead-lettering",
                pattern="^" + re.escape(self.queue(function)) + "$",
                definition=self._dead_lettering(function),
            )
            for function in SUBSCRIPTIONS
        ]

    def declare(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        for function, types in SUBSCRIPTIONS.items():
            dlq = self.dead_letter_queue(function)
            channel.queue_declare(dlq, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_declare(
                self.queue(function), durable=True, arguments=self.queue_arguments(function)
            )
            for type_ in types:
                channel.queue_bind(self.queue(function), self.exchange, routing_key=type_)
            for seconds in RETRY_TIERS_SECONDS:
                channel.queue_declare(
                    self.retry_queue(function, seconds),
                    durable=True,
                    arguments={
                        "x-message-ttl": seconds * 1000,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": self.queue(function),
                    },
                )

    def delete(self, channel: BlockingChannel) -> None:
        """Remove everything `declare` made (tests)."""
        for function in SUBSCRIPTIONS:
            for name in (
                self.queue(function),
                self.dead_letter_queue(function),
                *(self.retry_queue(function, s) for s in RETRY_TIERS_SECONDS),
            ):
                channel.queue_delete(name)
        channel.exchange_delete(self.exchange)


def topology() -> Topology:
    settings = get_settings()
    return Topology(settings.event_namespace, settings.rabbitmq_dead_lettering)


def connection_parameters(url: str | None = None) -> pika.URLParameters:
    params = pika.URLParameters(url or get_settings().rabbitmq_url)
    params.heartbeat = 60
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1
    params.socket_timeout = 5
    return params


def connect(url: str | None = None) -> pika.BlockingConnection:
    return pika.BlockingConnection(connection_parameters(url))


def check_connection() -> None:
    connect().close()


def declare_topology() -> Topology:
    topo = topology()
    conn = connect()
    try:
        topo.declare(conn.channel())
    finally:
        conn.close()
    return topo


class PublishError(RuntimeError):
    """The broker did not confirm the message (nacked, unroutable or connection lost)."""


class Publisher:
    """Publishes with publisher confirms and `mandatory`: a return means it is not stored.

    One connection per thread (pika is not thread-safe); reconnects once on a broken
    connection. Callers treat `PublishError` as transient.
    """

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._local = threading.local()

    def _channel(self) -> BlockingChannel:
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.is_closed or channel.connection.is_closed:
            conn = connect(self._url)
            channel = conn.channel()
            channel.confirm_delivery()
            self._local.channel = channel
        return channel

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, object] | None = None,
        message_id: str | None = None,
    ) -> None:
        props = pika.BasicProperties(
            content_type=ev.CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            headers=headers or {},
            message_id=message_id,
        )
        for attempt in (1, 2):
            try:
                self._channel().basic_publish(
                    exchange, routing_key, body, properties=props, mandatory=True
                )
                return
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                raise PublishError(f"broker refused the message: {exc}") from exc
            except pika.exceptions.AMQPError as exc:
                self.close()
                if attempt == 2:
                    raise PublishError(f"broker unavailable: {exc!r}") from exc
        raise AssertionError("unreachable")

    def publish_many(
        self, exchange: str, messages: Sequence[Message], timeout: float = 30.0
    ) -> list[bool]:
        """Publish a batch, then wait once for the broker's confirms.

        Returns, per message, whether the broker confirmed storing it (False: nacked,
        returned as unroutable, connection lost or no confirm within `timeout`; the caller
        publishes those again later). Confirms are awaited together instead of one round
        trip per message (`publish`), which the relay's throughput depended on.
        """
        results = [False] * len(messages)
        if not messages:
            return results
        if any(m.message_id is None for m in messages):
            raise ValueError("publish_many needs a message_id on every message")
        for attempt in (1, 2):
            try:
                batch = self._batch_channel()
                break
            except pika.exceptions.AMQPError as exc:
                self._close_batch()
                if attempt == 2:
                    raise PublishError(f"broker unavailable: {exc!r}") from exc
        try:
            batch.publish(exchange, messages, results, timeout)
        except pika.exceptions.AMQPError as exc:  # unconfirmed ones stay False
            self._close_batch()
            if not any(results):
                raise PublishError(f"broker unavailable: {exc!r}") from exc
        if batch.pending:  # confirms overdue: never let them land in a later batch
            self._close_batch()
        return results

    def _batch_channel(self) -> _ConfirmingBatch:
        batch = getattr(self._local, "batch", None)
        if batch is None or not batch.usable():
            self._close_batch()
            batch = _ConfirmingBatch(connect(self._url))
            self._local.batch = batch
        return batch

    def _close_batch(self) -> None:
        batch = getattr(self._local, "batch", None)
        self._local.batch = None
        if batch is not None:
            batch.close()

    def close(self) -> None:
        self._close_batch()
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            try:
                channel.connection.close()
            except Exception:  # already broken: nothing to release
                pass


@dataclass(frozen=True)
class Message:
    """One message of `Publisher.publish_many`."""

    routing_key: str
    body: bytes
    headers: dict[str, object] | None = None
    message_id: str | None = None


def _properties(headers: dict[str, object] | None, message_id: str | None) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=ev.CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        headers=headers or {},
        message_id=message_id,
    )


class _ConfirmingBatch:
    """A channel in confirm mode whose confirms are collected asynchronously.

    pika's BlockingChannel waits for each confirm inside basic_publish; its underlying channel
    (`_impl`, pika 1.x) publishes without waiting and reports acks, nacks and returns through
    callbacks, which run while `process_data_events` drives the connection (this thread
    only). RabbitMQ sends the return of an unroutable mandatory message before its ack, so a
    message whose id was returned counts as not stored.
    """

    def __init__(self, conn: pika.BlockingConnection) -> None:
        self.conn = conn
        try:
            self.channel = conn.channel()
            self._impl = self.channel._impl
            self.next_tag = 1
            self.pending: dict[int, int] = {}  # delivery tag -> index in the current batch
            self._ids: dict[int, str] = {}
            self._results: list[bool] = []
            self._returned: set[str] = set()
            selected: list[bool] = []
            self._impl.add_on_return_callback(self._on_return)
            self._impl.confirm_delivery(
                ack_nack_callback=self._on_confirm,
                callback=lambda _frame: (selected.append(True), self._wake()),
            )
            deadline = time.monotonic() + 10
            while not selected:
                if time.monotonic() > deadline:
                    raise pika.exceptions.AMQPChannelError("confirm mode was not acknowledged")
                conn.process_data_events(time_limit=deadline - time.monotonic())
        except BaseException:
            self.close()
            raise

    def usable(self) -> bool:
        return self.conn.is_open and self.channel.is_open and not self.pending

    def publish(
        self, exchange: str, messages: Sequence[Message], results: list[bool], timeout: float
    ) -> None:
        self._results = results
        self._returned.clear()
        for index, message in enumerate(messages):
            self._impl.basic_publish(
                exchange,
                message.routing_key,
                message.body,
                _properties(message.headers, message.message_id),
                mandatory=True,
            )
            self.pending[self.next_tag] = index
            self._ids[self.next_tag] = str(message.message_id)
            self.next_tag += 1
        deadline = time.monotonic() + timeout
        while self.pending and (left := deadline - time.monotonic()) > 0:
            self.conn.process_data_events(time_limit=left)

    def _on_return(self, _channel: Any, _method: Any, props: Any, _body: bytes) -> None:
        self._returned.add(str(props.message_id))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            tags = [t for t in self.pending if t <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            index = self.pending.pop(tag, None)
            message_id = self._ids.pop(tag, None)
            if index is not None:
                self._results[index] = acked and message_id not in self._returned
        if not self.pending:
            self._wake()

    def _wake(self) -> None:
        # A zero-delay timer ends the current process_data_events at once (callbacks of the
        # underlying channel alone would not).
        self.conn.call_later(0, _noop)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # already broken: nothing to release
            pass


def _noop() -> None:
    pass
