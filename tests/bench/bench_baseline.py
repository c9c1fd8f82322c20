"""The raw baselines: what the same hops cost when wired by hand, with nothing else.

    python tests/bench/bench_baseline.py --port P --database-url URL --rabbitmq-url URL \
        --namespace NS --ai-url URL --delivery-url URL --workers N

One process, werkzeug's threaded WSGI server (the server `make run` uses), psycopg and pika:

- POST /ingest-raw: the bare streaming endpoint. Reads the body in 256 KiB pieces and writes
  it into PostgreSQL as 1 MiB rows in one transaction; answers 202. No parsing, hashing,
  authentication or bookkeeping.
- POST /calls: the hand-wired pipeline's entry. One PostgreSQL row per call (the body), then
  hop 1 is published with a publisher confirm; answers 202 {"id"}.
  hop 1 -> "analyze": reads the WAV header from the row, publishes hop 2 (confirm), acks.
  hop 2 -> "ai": reads the audio from the row, POSTs it to the AI (multipart), publishes hop 3
           (confirm) with the result, acks.
  hop 3 -> "deliver": POSTs the JSON result to the destination, acks.
  Queues are durable quorum queues with persistent messages and manual acks, as the product's.
  `--workers 1`: each stage handles one message at a time in the consumer's callback (the
  plainest hand-wiring). `--workers N`: N worker threads per stage and a prefetch of N, acks
  handed back to the connection's thread (the same concurrency model as the product's
  dispatcher with DISPATCHER_CONCURRENCY=N).
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import struct
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pika
import psycopg
from werkzeug.serving import WSGIRequestHandler, make_server

READ = 256 * 1024
ROW = 1 << 20
STAGES = ("analyze", "ai", "deliver")

ARGS: argparse.Namespace


class Pool:
    """Connections reused across threads, one user at a time (werkzeug starts a thread per
    request, so thread-local connections would be opened per request)."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue()

    @contextmanager
    def get(self) -> Iterator[Any]:
        try:
            item = self.idle.get_nowait()
        except queue.Empty:
            item = self.factory()
        try:
            yield item
        except BaseException:
            self.discard(item)
            raise
        self.idle.put(item)

    @staticmethod
    def discard(item: Any) -> None:
        try:
            (item.connection if hasattr(item, "basic_publish") else item).close()
        except Exception:
            pass


def _db_factory() -> psycopg.Connection:
    return psycopg.connect(ARGS.database_url, autocommit=True)


def _channel_factory() -> Any:
    """A confirming channel on its own connection (pika is not thread-safe)."""
    conn = pika.BlockingConnection(pika.URLParameters(ARGS.rabbitmq_url))
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


DB = Pool(_db_factory)
CHANNELS = Pool(_channel_factory)


def queue_name(stage: str) -> str:
    return f"{ARGS.namespace}.baseline.{stage}"


def publish(stage: str, message: dict[str, Any]) -> None:
    # Blocks until the broker confirms (mandatory: an unroutable message raises). An idle
    # pooled connection may have been closed by the broker: one retry on a fresh one.
    props = pika.BasicProperties(
        content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent
    )
    for attempt in (1, 2):
        try:
            with CHANNELS.get() as ch:
                ch.basic_publish(
                    "", queue_name(stage), json.dumps(message).encode(), props, mandatory=True
                )
            return
        except (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed):
            if attempt == 2:
                raise


def setup() -> None:
    with psycopg.connect(ARGS.database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_blob (upload_id uuid, seq int, data bytea NOT NULL,"
            " PRIMARY KEY (upload_id, seq))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_call (id uuid PRIMARY KEY, received_at timestamptz"
            " NOT NULL DEFAULT now(), size int NOT NULL, data bytea NOT NULL)"
        )
    conn = pika.BlockingConnection(pika.URLParameters(ARGS.rabbitmq_url))
    ch = conn.channel()
    for stage in STAGES:
        ch.queue_declare(queue_name(stage), durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()


def teardown() -> None:
    try:
        conn = pika.BlockingConnection(pika.URLParameters(ARGS.rabbitmq_url))
        ch = conn.channel()
        for stage in STAGES:
            ch.queue_delete(queue_name(stage))
        conn.close()
    except Exception as exc:
        print(f"baseline: could not delete queues: {exc!r}", flush=True)


# --- HTTP ------------------------------------------------------------------------------------


def _answer(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(status, headers)
    return [data]


def _body_pieces(environ: dict[str, Any]) -> Any:
    stream = environ["wsgi.input"]
    left = int(environ.get("CONTENT_LENGTH") or 0)
    while left > 0:
        chunk = stream.read(min(READ, left))
        if not chunk:
            break
        left -= len(chunk)
        yield chunk


def ingest_raw(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    upload_id = uuid.uuid4()
    buffer = bytearray()
    seq = 0
    size = 0
    with DB.get() as conn, conn.transaction():
        for chunk in _body_pieces(environ):
            size += len(chunk)
            buffer += chunk
            while len(buffer) >= ROW:
                conn.execute(
                    "INSERT INTO bench_blob (upload_id, seq, data) VALUES (%s, %s, %s)",
                    (upload_id, seq, bytes(buffer[:ROW])),
                )
                del buffer[:ROW]
                seq += 1
        if buffer:
            conn.execute(
                "INSERT INTO bench_blob (upload_id, seq, data) VALUES (%s, %s, %s)",
                (upload_id, seq, bytes(buffer)),
            )
    return _answer(start_response, "202 Accepted", {"id": str(upload_id), "size": size})


def post_call(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"".join(_body_pieces(environ))
    call_id = uuid.uuid4()
    with DB.get() as conn:
        conn.execute(
            "INSERT INTO bench_call (id, size, data) VALUES (%s, %s, %s)",
            (call_id, len(body), body),
        )
    publish("analyze", {"id": str(call_id)})
    return _answer(start_response, "202 Accepted", {"id": str(call_id)})


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        return _answer(start_response, "200 OK", {"status": "ok"})
    if environ.get("REQUEST_METHOD") == "POST" and path == "/ingest-raw":
        return ingest_raw(environ, start_response)
    if environ.get("REQUEST_METHOD") == "POST" and path == "/calls":
        return post_call(environ, start_response)
    return _answer(start_response, "404 Not Found", {"error": "not found"})


# --- the three stages --------------------------------------------------------------------------

_http: httpx.Client


def _wav_duration(header: bytes) -> float:
    # The body is multipart: find the WAV header inside it.
    at = header.find(b"RIFF")
    if at < 0:
        return 0.0
    fmt = header[at + 20 : at + 36]
    _, channels, rate, byte_rate, _, _ = struct.unpack("<HHIIHH", fmt)
    (data_bytes,) = struct.unpack("<I", header[at + 40 : at + 44])
    return data_bytes / byte_rate if byte_rate else 0.0


def analyze(message: dict[str, Any]) -> None:
    with DB.get() as conn:
        head = conn.execute(
            "SELECT substring(data from 1 for 1024) FROM bench_call WHERE id = %s",
            (message["id"],),
        ).fetchone()
    duration = _wav_duration(bytes(head[0])) if head else 0.0
    publish("ai", {"id": message["id"], "duration": duration})


def call_ai(message: dict[str, Any]) -> None:
    with DB.get() as conn:
        row = conn.execute("SELECT data FROM bench_call WHERE id = %s", (message["id"],)).fetchone()
    response = _http.post(
        ARGS.ai_url,
        data={"metadata": json.dumps({"call_id": message["id"]})},
        files={"file": ("call.wav", bytes(row[0]), "audio/wav")},
    )
    response.raise_for_status()
    publish("deliver", {"id": message["id"], "result": response.json()})


def deliver(message: dict[str, Any]) -> None:
    body = {"type": "call.processed", "call": {"id": message["id"]}, "result": message["result"]}
    response = _http.post(ARGS.delivery_url, json=body)
    response.raise_for_status()


HANDLERS = {"analyze": analyze, "ai": call_ai, "deliver": deliver}


def consume(stage: str, stopped: threading.Event) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(ARGS.rabbitmq_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=ARGS.workers)
    handler = HANDLERS[stage]

    def work(method: Any, body: bytes) -> None:
        tag = method.delivery_tag
        try:
            handler(json.loads(body))
        except Exception as exc:
            print(f"baseline {stage} failed: {exc!r}", flush=True)
            conn.add_callback_threadsafe(lambda: ch.basic_nack(tag, requeue=True))
            return
        if ARGS.workers == 1:
            ch.basic_ack(tag)
        else:
            conn.add_callback_threadsafe(lambda: ch.basic_ack(tag))

    if ARGS.workers == 1:
        ch.basic_consume(queue_name(stage), lambda _c, m, _p, b: work(m, b), auto_ack=False)
    else:
        pool = ThreadPoolExecutor(ARGS.workers, thread_name_prefix=stage)
        ch.basic_consume(
            queue_name(stage), lambda _c, m, _p, b: pool.submit(work, m, b), auto_ack=False
        )
    while not stopped.is_set():
        conn.process_data_events(time_limit=0.5)
    conn.close()


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def main() -> int:
    global ARGS, _http
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rabbitmq-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--ai-url", required=True)
    parser.add_argument("--delivery-url", required=True)
    parser.add_argument("--workers", type=int, default=1)
    ARGS = parser.parse_args()
    _http = httpx.Client(timeout=120, trust_env=False)
    setup()
    stopped = threading.Event()
    threads = [
        threading.Thread(target=consume, args=(stage, stopped), daemon=True) for stage in STAGES
    ]
    for t in threads:
        t.start()
    server = make_server("127.0.0.1", ARGS.port, app, threaded=True, request_handler=_Quiet)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        stopped.set()
        for t in threads:
            t.join(5)
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
