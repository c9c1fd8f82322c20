"""RabbitMQ: the topology, connections and a confirming publisher (pika).

Topology (names prefixed with EVENT_NAMESPACE, `calldl` by default):
- `<ns>.events`: durable topic exchange; routing key = CloudEvent type.
- `<ns>.<function>`: durable quorum queue per consuming function, bound to its event types;
  a delivery limit dead-letters a message that keeps crashing its consumer.
- `<ns>.<function>.retry.<N>s`: delay tiers (message TTL, dead-lettered back into the
  function's queue through the default exchange): the dispatcher's retries with backoff.
- `<ns>.<function>.dlq`: dead letters, after the last attempt or for poison messages.

pika connections are not thread-safe: each thread uses its own (see `Publisher`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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
class Topology:
    namespace: str

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

    def declare(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        for function, types in SUBSCRIPTIONS.items():
            dlq = self.dead_letter_queue(function)
            channel.queue_declare(dlq, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_declare(
                self.queue(function),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": DELIVERY_LIMIT,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": dlq,
                },
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
    return Topology(get_settings().event_namespace)


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

    def close(self) -> None:
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            try:
                channel.connection.close()
            except Exception:  # already broken: nothing to release
                pass
