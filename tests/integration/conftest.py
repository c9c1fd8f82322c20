"""Integration fixtures: the real RabbitMQ topology of this test run (deleted afterwards)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def broker(db: None) -> Iterator[object]:
    from call_downloader.events.broker import connect, declare_topology

    topo = declare_topology()
    yield topo
    conn = connect()
    try:
        ch = conn.channel()
        topo.delete(ch)
    finally:
        conn.close()
