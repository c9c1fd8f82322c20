"""What the Knative wiring relies on from RabbitMQ, checked on the real broker.

A RabbitmqSource reads a predeclared queue, posts each message to the function and, after
its last retry, rejects the message without requeueing it: the queue's own dead-letter
settings must then move it to <queue>.dlq, or it would be lost. And the source passes a
message on unchanged as a structured CloudEvent only when its AMQP content type says
application/cloudevents+json.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def topology() -> Iterator[object]:
    from call_downloader.events.broker import Topology, connect

    topo = Topology(f"cddeploy_{uuid.uuid4().hex[:8]}")
    conn = connect()
    try:
        topo.declare(conn.channel())
        yield topo
    finally:
        try:
            topo.delete(conn.channel())
        finally:
            conn.close()


def test_a_rejected_message_lands_in_the_dead_letter_queue(topology) -> None:
    from call_downloader.events.broker import SUBSCRIPTIONS, Publisher, connect

    publisher = Publisher()
    conn = connect()
    try:
        channel = conn.channel()
        for function, types in SUBSCRIPTIONS.items():
            for event_type in types:
                event_id = uuid.uuid4().hex
                body = json.dumps(
                    {
                        "specversion": "1.0",
                        "id": event_id,
                        "type": event_type,
                        "source": "/tests/deploy",
                        "subject": "call-1",
                        "data": {},
                    }
                ).encode()
                publisher.publish(topology.exchange, event_type, body, message_id=event_id)

                method, props, got = channel.basic_get(topology.queue(function))
                assert method is not None, f"{event_type} did not reach {function}'s queue"
                assert got == body
                # RabbitmqSource reads the AMQP content type to pass structured events on.
                assert props.content_type == "application/cloudevents+json"
                # What the source does after its last failed delivery attempt.
                channel.basic_nack(method.delivery_tag, requeue=False)

                dead = None
                for _ in range(50):  # dead-lettering is asynchronous on quorum queues
                    dead = channel.basic_get(topology.dead_letter_queue(function), auto_ack=True)
                    if dead[0] is not None:
                        break
                    conn.sleep(0.1)
                assert dead is not None and dead[0] is not None, (
                    f"a message rejected from {topology.queue(function)} was dropped"
                )
                assert dead[2] == body
    finally:
        publisher.close()
        conn.close()
