"""The dispatcher: the local counterpart of a Knative RabbitMQ trigger.

It consumes a function's queue, invokes the function with the CloudEvent (in-process, or over
HTTP in binary mode when the function runs in its own container) and acts on its answer as
the table of `events.answers` says, like the Knative RabbitmqSource: a 2xx is acked; a
retriable answer (503, 429, ...; an exception in-process, or no answer at all) is retried
through the delay tiers, no sooner than its Retry-After, and after `DISPATCHER_MAX_ATTEMPTS`
goes to the function's dead-letter queue; any other answer (400: malformed) goes there at
once. Handlers are idempotent, so a redelivery is harmless.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pika
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from call_downloader.config import get_settings
from call_downloader.events import types as ev
from call_downloader.events.answers import (
    Answer,
    answer_for,
    answer_from_http,
    disposition,
    unreachable,
)
from call_downloader.events.broker import (
    RETRY_TIERS_SECONDS,
    Publisher,
    Topology,
    connect,
    topology,
)
from call_downloader.observability.context import bind, in_scope
from call_downloader.observability.instrument import dispatched, event_fields
from call_downloader.testing import faults

log = logging.getLogger(__name__)

# Calls a function with an event: returns its Answer (or None: handled), or raises (the
# function's own failure, answered through `answers.answer_for`).
Invoker = Callable[[CloudEvent], "Answer | None"]
ATTEMPT_HEADER = "x-cd-attempt"

# Folder and target of each CloudEvent function (functions/<folder>/main.py).
EVENT_FUNCTIONS: dict[str, str] = {
    "analyze-duration": "analyze_duration",
    "call-ai": "call_ai",
    "deliver": "deliver",
}


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def load_function_target(folder: str, target: str) -> Callable[..., Any]:
    """Import functions/<folder>/main.py the way functions-framework does, return the target."""
    source = repo_root() / "functions" / folder / "main.py"
    name = f"cd_function_{folder.replace('-', '_')}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, source)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    fn = getattr(module, target)
    # functions-framework's decorator registers the function; the undecorated one is what
    # runs the handler.
    return getattr(fn, "__wrapped__", fn)


def in_process_invoker(function: str) -> Invoker:
    return load_function_target(function, EVENT_FUNCTIONS[function])


def http_invoker(url: str, timeout: float = 600.0) -> Invoker:
    client = httpx.Client(timeout=timeout)

    def invoke(event: CloudEvent) -> Answer:
        headers, body = to_binary(event)
        try:
            response = client.post(url, headers=headers, content=body)
        except httpx.TransportError as exc:
            return unreachable(exc)
        reason = ""
        if response.status_code // 100 != 2:
            reason = f"function answered {response.status_code}: {response.text[:300]}"
        return answer_from_http(response.status_code, response.headers.get("retry-after"), reason)

    return invoke


def invoke(invoker: Invoker, event: CloudEvent) -> Answer:
    """The function's answer to `event`, however it is called."""
    try:
        answer = invoker(event)
    except Exception as exc:
        return answer_for(exc)
    return answer if isinstance(answer, Answer) else answer_for(None)


def retry_tier(topo: Topology, attempt: int, retry_after: int | None) -> int:
    """The delay tier of retry number `attempt`, at least the answer's Retry-After."""
    tier = topo.retry_tier(attempt)
    if retry_after:
        wanted = next((t for t in RETRY_TIERS_SECONDS if t >= retry_after), RETRY_TIERS_SECONDS[-1])
        tier = max(tier, wanted)
    return tier


class Dispatcher:
    def __init__(
        self,
        invokers: dict[str, Invoker],
        *,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        topo: Topology | None = None,
    ) -> None:
        settings = get_settings()
        self.invokers = invokers
        self.concurrency = concurrency or settings.dispatcher_concurrency
        self.max_attempts = max_attempts or settings.dispatcher_max_attempts
        self.topo = topo or topology()
        self.publisher = Publisher()
        self.stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[pika.BlockingConnection] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for function in self.invokers:
            thread = threading.Thread(
                target=self._consume_forever,
                args=(function,),
                name=f"dispatch-{function}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        # Each consumer loop notices within half a second, lets its in-flight work finish and
        # closes its connection.
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout)
        self.publisher.close()

    def alive(self) -> bool:
        """Every consumer thread is running (each reconnects by itself after broker faults)."""
        return not self.stopped.is_set() and all(t.is_alive() for t in self._threads)

    # -- consuming ---------------------------------------------------------------------------
    def _consume_forever(self, function: str) -> None:
        failures = 0
        while not self.stopped.is_set():
            try:
                self._consume(function)
                failures = 0
            except Exception:  # broker restarted or unreachable: reconnect with backoff
                failures += 1
                log.warning(
                    "dispatcher for %s lost the broker; reconnecting",
                    function,
                    exc_info=failures == 1,
                )
                self.stopped.wait(min(15.0, 0.5 * 2 ** min(failures, 5)))

    def _consume(self, function: str) -> None:
        conn = connect()
        with self._lock:
            self._connections.append(conn)
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{function}-worker")
        try:
            channel = conn.channel()
            self.topo.declare(channel)
            channel.basic_qos(prefetch_count=self.concurrency)

            def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
                executor.submit(self._handle, conn, ch, function, method, props, body)

            channel.basic_consume(self.topo.queue(function), on_message, auto_ack=False)
            while not self.stopped.is_set() and channel.is_open:
                conn.process_data_events(time_limit=0.5)
        finally:
            executor.shutdown(wait=True)  # in-flight work finishes; its acks are lost if the
            # connection is gone, so RabbitMQ redelivers (idempotent handlers make that safe)
            try:
                conn.process_data_events(time_limit=0)
                conn.close()
            except Exception:  # already closed by the broker
                pass
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    @in_scope
    def _handle(
        self,
        conn: pika.BlockingConnection,
        channel: Any,
        function: str,
        method: Any,
        props: Any,
        body: bytes,
    ) -> None:
        tag = method.delivery_tag
        headers = dict(props.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0) or 0) + 1
        try:
            event = ev.parse_structured(body)
        except ev.MalformedEvent as exc:
            log.error("poison message on %s: %s", function, exc)
            self._dead_letter(function, body, headers, f"malformed: {exc}")
            dispatched(function, None, "poison")
            self._ack(conn, channel, tag)
            return
        bind(function=function, **event_fields(event))  # this message's log lines
        started = time.monotonic()
        faults.point("dispatcher.before_work")
        answer = invoke(self.invokers[function], event)
        outcome = disposition(answer, attempt, self.max_attempts)
        if outcome != "ok":
            log.warning(
                "%s did not handle event %s (attempt %d): %d %s",
                function,
                event["id"],
                attempt,
                answer.status,
                answer.reason,
                extra={"event_id": event["id"], "call_id": event.get("subject")},
            )
            try:
                if outcome == "retry":
                    headers[ATTEMPT_HEADER] = attempt
                    self.publisher.publish(
                        "",
                        self.topo.retry_queue(
                            function, retry_tier(self.topo, attempt, answer.retry_after)
                        ),
                        body,
                        headers=headers,
                        message_id=event["id"],
                    )
                else:
                    why = f"{answer.status} {answer.reason}"[:500]
                    self._dead_letter(function, body, headers, why)
                dispatched(function, event["type"], outcome, time.monotonic() - started)
            except Exception:  # could not park it: let RabbitMQ redeliver it instead
                log.exception("could not schedule a retry; requeueing")
                self._nack(conn, channel, tag)
                dispatched(function, event["type"], "requeued")
                return
            self._ack(conn, channel, tag)
            return
        log.debug("%s handled %s in %.3fs", function, event["id"], time.monotonic() - started)
        dispatched(function, event["type"], "ok", time.monotonic() - started)
        faults.point("dispatcher.after_work_before_ack")  # done, not acked: redelivered
        self._ack(conn, channel, tag)

    def _dead_letter(self, function: str, body: bytes, headers: dict[str, Any], why: str) -> None:
        headers = {**headers, "x-cd-dead-letter-reason": why}
        self.publisher.publish("", self.topo.dead_letter_queue(function), body, headers=headers)

    @staticmethod
    def _ack(conn: pika.BlockingConnection, channel: Any, tag: int) -> None:
        try:
            conn.add_callback_threadsafe(lambda: channel.is_open and channel.basic_ack(tag))
        except Exception:  # connection lost: the broker redelivers; handlers are idempotent
            log.warning("ack lost (connection closed); the event will be redelivered")

    @staticmethod
    def _nack(conn: pika.BlockingConnection, channel: Any, tag: int) -> None:
        try:
            conn.add_callback_threadsafe(
                lambda: channel.is_open and channel.basic_nack(tag, requeue=True)
            )
        except Exception:
            log.warning("nack lost (connection closed); the event will be redelivered")
