"""Removing a test run's RabbitMQ exchange and queues."""

from __future__ import annotations


def delete_namespace_queues(namespace: str) -> None:
    """Drop a test run's RabbitMQ exchange and queues: leftover quorum queues pile up and slow
    every later RabbitMQ restart on this machine. Quiet when RabbitMQ is not running."""
    from call_downloader.events.broker import Topology, connect

    try:
        conn = connect()
    except Exception:
        return
    try:
        Topology(namespace).delete(conn.channel())
    except Exception:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass
