"""Outbox relay: events per second draining a backlog, against a raw publisher.

    python tests/bench/bench_relay.py --database-url URL --namespace NS [--events 400]

Run as its own process (by `bench_main.py`, with the product tree's import path) so the
library reads this database and namespace. Product: `relay.publish_due` rounds until the
backlog of committed outbox rows is empty (each round locks rows, publishes them with
confirms, marks them). Baseline: the same envelopes published by a bare pika
BlockingChannel in confirm mode, one confirm per message, with no database work at all: what
a hand-written relay's publishing alone costs. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--events", type=int, default=400)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["EVENT_NAMESPACE"] = args.namespace

    import pika
    from sqlalchemy import select

    from call_downloader.db.engine import dispose_engine, unit_of_work
    from call_downloader.db.models import OutboxEvent
    from call_downloader.events import outbox
    from call_downloader.events import types as ev
    from call_downloader.events.broker import Publisher, connect, declare_topology
    from call_downloader.events.relay import publish_due

    topo = declare_topology()
    try:
        with unit_of_work() as session:
            ids = [
                outbox.add_event(session, ev.CALL_RECEIVED, uuid.uuid4(), {"bench": i}).id
                for i in range(args.events)
            ]
            # The same envelopes the relay will publish, for the raw publisher.
            rows = session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids))).all()
            bodies = [ev.to_json_bytes(outbox.to_envelope(row)) for row in rows]
        publisher = Publisher()
        publish_due(publisher, topo, batch=1)  # connections warm, one event out
        started, cpu = time.perf_counter(), time.thread_time()
        done, idle_rounds = 1, 0
        while done < args.events and idle_rounds < 20:  # a broker hiccup: try again shortly
            published = publish_due(publisher, topo)
            done += published
            idle_rounds = 0 if published else idle_rounds + 1
            if not published:
                time.sleep(0.1)
        took, cpu_took = time.perf_counter() - started, time.thread_time() - cpu
        publisher.close()
        if done != args.events:
            raise RuntimeError(f"published {done} of {args.events}")

        conn = connect()
        channel = conn.channel()
        channel.confirm_delivery()
        props = pika.BasicProperties(
            content_type=ev.CONTENT_TYPE, delivery_mode=pika.DeliveryMode.Persistent
        )
        channel.basic_publish(topo.exchange, ev.CALL_RECEIVED, bodies[0], props, mandatory=True)
        raw_started, raw_cpu = time.perf_counter(), time.thread_time()
        for body in bodies[1:]:
            channel.basic_publish(topo.exchange, ev.CALL_RECEIVED, body, props, mandatory=True)
        raw_took, raw_cpu_took = time.perf_counter() - raw_started, time.thread_time() - raw_cpu
        conn.close()
        n = args.events - 1
        print(
            json.dumps(
                {
                    "events": n,
                    "product_events_s": n / took,
                    "product_cpu_ms_per_event": cpu_took / n * 1000,
                    "baseline_events_s": n / raw_took,
                    "baseline_cpu_ms_per_event": raw_cpu_took / n * 1000,
                }
            )
        )
    finally:
        conn = connect()
        topo.delete(conn.channel())
        conn.close()
        dispose_engine()
    return 0


def run(ctx: object, events: int = 400) -> dict[str, object]:
    """From bench_main: a fresh namespace on the run's database, the product's import path."""
    import subprocess

    from bench_common import BENCH_DIR, PYTHON, ROOT, base_env, log, ratio

    namespace = f"{ctx.namespace}_relay"  # type: ignore[attr-defined]
    out = subprocess.run(
        [
            PYTHON,
            str(BENCH_DIR / "bench_relay.py"),
            "--database-url",
            ctx.database_url,  # type: ignore[attr-defined]
            "--namespace",
            namespace,
            "--events",
            str(events),
        ],
        cwd=ROOT,
        env=base_env(ctx.database_url, namespace),  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"relay benchmark failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["ratio"] = ratio(result["product_events_s"], result["baseline_events_s"])
    log(
        f"relay: {result['product_events_s']:.0f} events/s "
        f"({result['product_cpu_ms_per_event']:.2f} ms CPU each), raw publisher "
        f"{result['baseline_events_s']:.0f} events/s"
    )
    return result


if __name__ == "__main__":
    sys.exit(main())
