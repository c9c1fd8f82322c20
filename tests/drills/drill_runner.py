"""Fault drills: drive N calls with known external ids through the real system while faults are
injected, let it settle, then count what the destination saw, Jepsen-style.

The system under test is one or more `call-downloader run` processes (the `make run` server:
HTTP functions, outbox relay and dispatcher in one process) sharing a fresh PostgreSQL database,
a RabbitMQ namespace and a Redis namespace, with a misbehaving fake AI and a verifying
destination on 127.0.0.1 (tests/drills/drill_fakes.py). A supervisor restarts a server that
dies, as a process manager would.

Verdict per external id, after the settle time:
- lost: accepted (2xx) but neither delivered nor `failed` with a reason;
- duplicated: delivered under two or more webhook-ids (or as two calls);
- unexpected: delivered but never accepted (unknown id, a refused one, or another call id);
- stuck: accepted and still not in a final state (`delivered`, `failed`);
- corrupted: delivered with other bytes than were sent (sha256, external id).
Pass: all of these are zero, and every poison event injected sits in a dead-letter queue.
Raw redelivery counts (same webhook-id twice, AI asked twice, client retries, restarts) are
reported but are not failures: at-least-once delivery with a stable id is the promise.

No pytest here: `infra/drill/drill.py` (make drill) and tests/drills/test_drill_short.py both
call `run_drill(DrillConfig(...))`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
import wave
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "tests", Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import drill_services as services  # noqa: E402
import httpx  # noqa: E402
from drill_fakes import AudioHost, ChaosAI, ChaosReceiver  # noqa: E402

FINAL = {"delivered", "failed"}
ALL_FAULTS = (
    "kill",  # SIGKILL a server process mid-flight (restarted by the supervisor)
    "crashpoints",  # restarts with CD_FAULT_POINTS: SIGKILL at exact moments
    "rabbitmq",  # rabbitmqctl stop_app ... start_app
    "postgres",  # pg_ctlcluster ... restart
    "redis",  # the namespace's keys deleted, then redis-server shut down and restarted
    "ai",  # 500, 429 + Retry-After, timeouts, trickle, HTML, huge body
    "destination",  # 503 for a long stretch, connections refused, slow, redirect to internal
    "duplicate",  # copies of already published events published again to the exchange
    "poison",  # undecodable or malformed events: must reach the dead-letter queue
)
# Where the crashpoints fault may kill a process; each restart in the window arms the next one.
CRASH_POINTS = (
    ("relay.after_publish_before_mark", "@1-6"),
    ("dispatcher.after_work_before_ack", "@1-12"),
    ("deliver.after_post_before_record", "@1-4"),
    ("relay.before_publish", "@1-6"),
    ("call_ai.after_answer_before_store", "@1-4"),
    ("ingest.after_commit_before_answer", "@1-4"),
    ("analyze.after_probe_before_commit", "@1-4"),
    ("dispatcher.before_work", "@2-12"),
)
AI_FAULT_MIX = {
    "500": 0.12, "429": 0.1, "timeout": 0.04, "trickle": 0.04, "html": 0.06, "unstorable": 0.04
}  # fmt: skip
HUGE_SHARE = 0.02


@dataclass
class DrillConfig:
    calls: int = 200
    servers: int = 2
    send_seconds: float = 90.0  # the calls are spread over this long
    settle_seconds: float = 300.0  # how long after the last send everything may take to finish
    faults: tuple[str, ...] = ALL_FAULTS
    seed: int = 1
    url_share: float = 0.2  # share of calls sent as JSON `audio_url` instead of an upload
    ai_async_share: float = 0.2  # share of good AI answers given asynchronously (202+callback)
    senders: int = 4
    keep: bool = False  # keep the database, queues and keys afterwards
    json_path: Path | None = None
    artifacts: Path = ROOT / "test-artifacts"
    label: str = "drill"

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")
        if self.calls < 1 or self.servers < 1 or self.senders < 1:
            raise ValueError("calls, servers and senders must be at least 1")


# -- helpers -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_wav(i: int, seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A small valid WAV, different for every call (so a mix-up shows in the hashes)."""
    rng = random.Random(i)
    frames = bytearray()
    for _ in range(int(seconds * rate)):
        frames += rng.randint(-3000, 3000).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return out.getvalue()


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, fault: str, what: str, **detail: Any) -> None:
        entry = {"t": round(self.now(), 1), "fault": fault, "what": what, **detail}
        with self._lock:
            self.entries.append(entry)
        print(f"  [{entry['t']:7.1f}s] {fault}: {what} {detail or ''}", flush=True)


# -- the system under test ---------------------------------------------------------------------
class ServerProc:
    """One `call-downloader run` process on a fixed port; restarted by the supervisor."""

    def __init__(self, slot: int, env: dict[str, str], log_path: Path) -> None:
        self.slot = slot
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "PUBLIC_BASE_URL": self.url}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []
        self.fault_points: str = ""
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, fault_points: str = "") -> None:
        env = dict(self.env)
        if fault_points:
            env["CD_FAULT_POINTS"] = fault_points
        self.fault_points = fault_points
        self.starts += 1
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} points={fault_points!r} =====\n".encode())
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/call-downloader"), "run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class Supervisor(threading.Thread):
    """Restarts dead servers, as systemd or Kubernetes would; arms crash points on request."""

    def __init__(self, servers: list[ServerProc], timeline: Timeline, fault_log: Path) -> None:
        super().__init__(name="drill-supervisor", daemon=True)
        self.servers = servers
        self.timeline = timeline
        self.fault_log = fault_log
        self.stopping = threading.Event()
        self.crash_window = threading.Event()
        self._next_point = 0
        self.restarts = 0
        self.exit_codes: Counter[int] = Counter()

    def points_for_start(self) -> str:
        if not self.crash_window.is_set():
            return ""
        name, when = CRASH_POINTS[self._next_point % len(CRASH_POINTS)]
        self._next_point += 1
        return f"{name}:{when}"

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            for server in self.servers:
                code = server.exited()
                if code is None:
                    continue
                server.exits.append(code)
                self.exit_codes[code] += 1
                self.restarts += 1
                points = self.points_for_start()
                self.timeline.note(
                    "supervisor",
                    f"server {server.slot} exited ({code}); restarting",
                    points=points or None,
                )
                quick = len(server.exits) >= 2 and time.monotonic() - server.started_at < 10
                time.sleep(2.0 if quick else 0.5)  # e.g. a service still down at start-up
                server.start(points)


# -- sending ------------------------------------------------------------------------------------
@dataclass
class Sent:
    external_id: str
    index: int
    sha256: str
    via: str
    call_id: str | None = None
    status: int | None = None  # the final answer's status
    attempts: int = 0
    transport_errors: int = 0
    server_errors: int = 0
    other_ids: set[str] = field(default_factory=set)
    outcome: str = "pending"  # accepted | rejected | gave_up
    detail: str = ""


class Sender:
    def __init__(self, cfg: DrillConfig, servers: list[ServerProc], token: str, host: AudioHost):
        self.cfg = cfg
        self.servers = servers
        self.token = token
        self.host = host
        self.sent: dict[str, Sent] = {}
        self.status_counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(cfg.seed)
        self.done = threading.Event()
        self.run_id = uuid.uuid4().hex[:6]

    def plan(self) -> list[tuple[int, str, bytes, str]]:
        items = []
        for i in range(self.cfg.calls):
            ext = f"{self.cfg.label}-{self.run_id}-{i:05d}"
            data = make_wav(self.cfg.seed * 1_000_003 + i)
            via = "url" if self._rng.random() < self.cfg.url_share else "upload"
            items.append((i, ext, data, via))
        return items

    def run(self, timeline: Timeline) -> None:
        items = self.plan()
        spacing = self.cfg.send_seconds / max(1, len(items))
        deadline = timeline.t0 + self.cfg.send_seconds + max(120.0, self.cfg.settle_seconds / 2)
        queue = list(items)
        lock = threading.Lock()

        def worker() -> None:
            client = httpx.Client(timeout=30)
            while True:
                with lock:
                    if not queue:
                        break
                    i, ext, data, via = queue.pop(0)
                due = timeline.t0 + i * spacing
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                self._send(client, i, ext, data, via, deadline)
            client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.cfg.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.done.set()

    def _send(
        self, client: httpx.Client, i: int, ext: str, data: bytes, via: str, deadline: float
    ) -> None:
        record = Sent(ext, i, hashlib.sha256(data).hexdigest(), via)
        with self._lock:
            self.sent[ext] = record
        if via == "url":
            self.host.files[f"/rec/{ext}.wav"] = data
        metadata = {"drill": self.cfg.label, "i": i}
        headers = {"Authorization": f"Bearer {self.token}"}
        backoff = 0.3
        while True:
            server = self.servers[(i + record.attempts) % len(self.servers)]
            record.attempts += 1
            try:
                if via == "url":
                    body = {
                        "audio_url": self.host.url(f"/rec/{ext}.wav"),
                        "external_id": ext,
                        "metadata": metadata,
                    }
                    r = client.post(f"{server.url}/api/v1/calls", headers=headers, json=body)
                else:
                    r = client.post(
                        f"{server.url}/api/v1/calls",
                        headers=headers,
                        files={"file": (f"{ext}.wav", data, "audio/wav")},
                        data={"external_id": ext, "metadata": json.dumps(metadata)},
                    )
            except httpx.HTTPError as exc:
                record.transport_errors += 1
                record.detail = repr(exc)[:200]
                self.status_counts["transport_error"] += 1
            else:
                self.status_counts[str(r.status_code)] += 1
                record.status = r.status_code
                if r.status_code in (200, 202):
                    call_id = r.json().get("id")
                    if record.call_id and call_id != record.call_id:
                        record.other_ids.add(call_id)
                    record.call_id = record.call_id or call_id
                    record.outcome = "accepted"
                    return
                if r.status_code >= 500 or r.status_code in (408, 409, 425, 429):
                    record.server_errors += 1
                    record.detail = r.text[:200]
                else:
                    record.outcome = "rejected"
                    record.detail = r.text[:300]
                    return
            if time.monotonic() > deadline:
                record.outcome = "gave_up"
                return
            time.sleep(backoff + random.random() * backoff)
            backoff = min(backoff * 2, 4.0)


# -- faults ------------------------------------------------------------------------------------
class Chaos:
    """The fault tracks; each runs in its own thread, spaced over the sending time T."""

    def __init__(self, drill: Drill) -> None:
        self.d = drill
        self.T = drill.cfg.send_seconds
        self.aborted = threading.Event()
        self.errors: list[str] = []
        self.injected_duplicates = 0
        self.injected_poison: list[dict[str, Any]] = []

    def at(self, fraction: float) -> bool:
        """Sleep until fraction*T after t0; False if the drill is being aborted."""
        target = self.d.timeline.t0 + fraction * self.T
        while time.monotonic() < target:
            if self.aborted.wait(min(0.5, target - time.monotonic())):
                return False
        return not self.aborted.is_set()

    def hold(self, seconds: float) -> bool:
        return not self.aborted.wait(seconds)

    def hold_until_seen(self, mode: str, seconds: float, longest: float) -> bool:
        """Hold the destination in `mode` for `seconds`, and on (up to `longest` in all) until
        it has answered at least one request in it: other faults (the broker down, restarts)
        can leave a short window without any attempt, and a fault nobody met proves nothing."""
        if not self.hold(seconds):
            return False
        deadline = time.monotonic() + max(0.0, longest - seconds)
        while self.d.receiver.by_mode.get(mode, 0) == 0 and time.monotonic() < deadline:
            if not self.hold(0.25):
                return False
        return True

    def tracks(self) -> list[threading.Thread]:
        faults = set(self.d.cfg.faults)
        plan = []
        if faults & {"kill", "crashpoints", "rabbitmq", "postgres", "redis"}:
            plan.append(self.track_systems)
        if "ai" in faults:
            plan.append(self.track_ai)
        if "destination" in faults:
            plan.append(self.track_destination)
        if faults & {"duplicate", "poison"}:
            plan.append(self.track_events)
        return [threading.Thread(target=self._guard(fn), daemon=True) for fn in plan]

    def _guard(self, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # a fault that could not be injected is reported
                self.errors.append(f"{fn.__name__}: {exc!r}")
                traceback.print_exc()

        return run

    # process and service faults: one after the other, each once the servers answer again, so
    # that every fault hits a working system and its effect can be told apart
    def wait_ready(self, timeout: float = 90.0) -> None:
        services.wait_until(lambda: all(s.ready() for s in self.d.servers), timeout, 0.3)

    def track_systems(self) -> None:
        d, faults = self.d, set(self.d.cfg.faults)
        rng = random.Random(d.cfg.seed + 1)
        outage = max(5.0, 0.08 * self.T)
        if "kill" in faults and self.at(0.08):
            victim = rng.choice(d.servers)
            d.timeline.note("kill", f"SIGKILL server {victim.slot} mid-flight")
            victim.kill()
            self.wait_ready()
        if "rabbitmq" in faults and self.at(0.12):
            d.timeline.note("rabbitmq", "stop_app")
            try:
                services.rabbitmq_stop()
                self.hold(outage)
            finally:
                services.rabbitmq_start()
                d.timeline.note("rabbitmq", "start_app: answering again")
            self.wait_ready()
        if "crashpoints" in faults and self.at(0.25):
            d.supervisor.crash_window.set()
            d.timeline.note("crashpoints", "window opens: servers restart with CD_FAULT_POINTS")
            for server in d.servers:
                server.kill()
            self.hold(max(15.0, 0.3 * self.T))
            d.supervisor.crash_window.clear()
            d.timeline.note("crashpoints", "window closes: servers restart without fault points")
            for server in d.servers:
                if server.fault_points:
                    server.kill()
            self.wait_ready()
        if "postgres" in faults and self.at(0.6):
            d.timeline.note("postgres", "restart")
            try:
                services.postgres_restart()
            finally:
                services.postgres_start()
                d.timeline.note("postgres", "answering again")
            self.wait_ready()
        if "redis" in faults and self.at(0.7):
            deleted = services.redis_delete_namespace(d.namespace)
            d.timeline.note("redis", f"deleted the namespace's {deleted} keys; shutdown nosave")
            try:
                services.redis_stop()
                self.hold(max(3.0, outage / 2))
            finally:
                services.redis_start()
                d.timeline.note("redis", "restarted: answering again")
            self.wait_ready()
        if "kill" in faults and self.at(0.85):
            victim = rng.choice(d.servers)
            d.timeline.note("kill", f"SIGKILL server {victim.slot} mid-flight")
            victim.kill()
            self.wait_ready()

    # external systems
    def track_ai(self) -> None:
        d = self.d
        if not self.at(0.08):
            return
        d.ai.faults = {**AI_FAULT_MIX, "huge": HUGE_SHARE}
        d.timeline.note("ai", "misbehaving", mix=d.ai.faults)
        try:
            # On, and on past its end until it has served two faults: the broker down and
            # restarts can leave the window without any AI request (a fault nobody met
            # proves nothing).
            if self.at(0.55):
                deadline = self.d.timeline.t0 + 1.5 * self.T
                while sum(d.ai.by_fault.values()) < 2 and time.monotonic() < deadline:
                    if not self.hold(0.25):
                        break
        finally:
            d.ai.faults = {}
            d.timeline.note("ai", "healthy again")

    def track_destination(self) -> None:
        d = self.d
        if not self.at(0.35):
            return
        try:
            d.receiver.mode = "down"
            d.timeline.note("destination", "down: 503 to everything")
            if not self.hold_until_seen("down", max(10.0, 0.2 * self.T), 1.5 * self.T):
                return
            d.receiver.mode = "ok"
            d.receiver.offline()
            d.timeline.note("destination", "offline: connections refused")
            try:
                self.hold(max(5.0, 0.08 * self.T))
            finally:
                d.receiver.online()
            d.receiver.mode = "slow"
            d.timeline.note("destination", f"slow: answers after {d.receiver.slow_seconds}s")
            if not self.hold(max(5.0, 0.08 * self.T)):
                return
            d.receiver.mode = "redirect"
            d.timeline.note("destination", f"redirecting to {d.receiver.redirect_to}")
            self.hold_until_seen("redirect", max(5.0, 0.06 * self.T), 1.0 * self.T)
        finally:
            d.receiver.mode = "ok"
            d.timeline.note("destination", "healthy again")

    # events
    def track_events(self) -> None:
        faults = set(self.d.cfg.faults)
        steps = [
            (0.3, "duplicate", lambda: self.duplicate_events(25)),
            (0.5, "poison", self.poison_events),
            (0.75, "duplicate", lambda: self.duplicate_events(25)),
            (1.0, "duplicate", lambda: self.duplicate_events(50)),
        ]
        for when, fault, step in steps:
            if fault in faults and self.at(when):
                step()

    def _channel(self) -> Any:
        """A confirming channel; waits for the broker when another fault has it down."""
        import pika

        params = pika.URLParameters(self.d.env["RABBITMQ_URL"])
        params.socket_timeout = 5
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = pika.BlockingConnection(params)
                break
            except pika.exceptions.AMQPConnectionError:
                if time.monotonic() > deadline or self.aborted.wait(1.0):
                    raise
        channel = conn.channel()
        channel.confirm_delivery()
        return conn, channel

    def _publish(self, channel: Any, routing_key: str, body: bytes, exchange: str | None = None):
        import pika

        channel.basic_publish(
            self.d.namespace + ".events" if exchange is None else exchange,
            routing_key,
            body,
            properties=pika.BasicProperties(
                content_type="application/cloudevents+json", delivery_mode=2
            ),
            mandatory=True,
        )

    def duplicate_events(self, count: int) -> None:
        """Publish copies (same CloudEvent id) of events the relay already published."""
        from call_downloader.events import types as ev

        rows = self.d.query(
            "SELECT id, type, subject, data, traceparent, created_at FROM outbox "
            "WHERE published_at IS NOT NULL ORDER BY random() LIMIT %s",
            (count,),
        )
        if not rows:
            self.d.timeline.note("duplicate", "nothing published yet to copy")
            return
        conn, channel = self._channel()
        try:
            for event_id, type_, subject, data, trace, created in rows:
                envelope = ev.envelope(
                    event_id, type_, subject, data, source="/call-downloader",
                    time=created, traceparent=trace,
                )  # fmt: skip
                self._publish(channel, type_, ev.to_json_bytes(envelope))
                self.injected_duplicates += 1
        finally:
            conn.close()
        kinds = Counter(r[1].split(".")[-2] for r in rows)
        self.d.timeline.note("duplicate", f"re-published {len(rows)} events", types=dict(kinds))

    def poison_events(self) -> None:
        from call_downloader.events import types as ev

        def ce(type_: str, subject: str, data: Any) -> bytes:
            event = ev.envelope(uuid.uuid4(), type_, subject, {}, source="/drill/poison")
            event["data"] = data
            return ev.to_json_bytes(event)

        poison = [
            ("analyze-duration", ev.CALL_RECEIVED, b"\x00\xffnot json at all"),
            ("analyze-duration", ev.CALL_RECEIVED, b'{"specversion": "1.0", "type": "x"}'),
            ("call-ai", ev.CALL_ANALYZED, ce(ev.CALL_ANALYZED, "not-a-call-id", {"run": 1})),
            ("deliver", ev.DELIVERY_DUE, ce(ev.DELIVERY_DUE, str(uuid.uuid4()), "a string")),
            ("deliver", ev.CALL_PROCESSED, b"[1, 2, 3]"),
        ]
        conn, channel = self._channel()
        try:
            for function, routing_key, body in poison:
                self._publish(channel, routing_key, body)
                self.injected_poison.append(
                    {"function": function, "body_sha256": hashlib.sha256(body).hexdigest()}
                )
        finally:
            conn.close()
        self.d.timeline.note("poison", f"published {len(poison)} poison events")


# -- the drill ---------------------------------------------------------------------------------
class Drill:
    def __init__(self, cfg: DrillConfig) -> None:
        self.cfg = cfg
        self.run_id = uuid.uuid4().hex[:8]
        self.namespace = f"cddrill_{self.run_id}"
        self.db_name = f"cd_drill_{self.run_id}"
        self.db_url = f"postgresql://postgres@127.0.0.1:5432/{self.db_name}"
        self.dir = cfg.artifacts / f"drill-{self.run_id}"
        self.timeline = Timeline()
        self.servers: list[ServerProc] = []
        self.env: dict[str, str] = {}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        last: Exception | None = None
        for _ in range(30):  # PostgreSQL may be restarting
            try:
                with psycopg.connect(self.db_url, connect_timeout=5) as conn:
                    return list(conn.execute(sql, params).fetchall())
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(1.0)
        raise RuntimeError(f"database unavailable: {last!r}")

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOST": "127.0.0.1",
                "DATABASE_URL": self.db_url,
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
                "EVENT_NAMESPACE": self.namespace,
                "AI_URL": f"{self.ai.url}/analyze",
                "DELIVERY_URL": f"{self.receiver.url}/hook",
                "DELIVERY_SECRET": self.secret,
                "JWT_SECRET": secrets.token_urlsafe(32),
                "ADMIN_USERNAME": "drill-admin",
                "ADMIN_PASSWORD": secrets.token_urlsafe(16),
                "ACCESS_TOKEN_MINUTES": "600",
                "DATA_DIR": str(self.dir / "data"),
                "AUDIO_URL_ALLOWLIST": "127.0.0.1:*",
                # Short schedules so that outages of a few seconds are ridden out in a drill.
                "AI_TIMEOUT_SECONDS": "3",
                "AI_RETRY_DELAYS": "0.5,1,1,2,2,3,3,3,3,3,3,3,3,3,3",
                "AI_CALLBACK_TIMEOUT_SECONDS": "15",
                "DELIVERY_TIMEOUT_SECONDS": "3",
                "DELIVERY_RETRY_DELAYS": "0.5,1,2,3,4,5,5,5,5,5,5,5,5,5,5,5,5,5",
                "OUTBOX_POLL_SECONDS": "1",
                "CD_FAULT_LOG": str(self.fault_log),
                "CD_FAULT_SEED": str(self.cfg.seed),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        os.environ["DRILL_SERVICE_LOG"] = str(self.dir / "services.log")
        self.fault_log = self.dir / "faults.log"
        healed = services.ensure_all()
        if healed:
            print(f"services were down before the drill and were restarted: {healed}")
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.ai = ChaosAI(seed=cfg.seed, async_share=cfg.ai_async_share).start()
        self.receiver = ChaosReceiver(secret=self.secret, seed=cfg.seed).start()
        self.host = AudioHost().start()
        self.env = self.base_env()
        chaos = self.chaos = Chaos(self)
        self.supervisor = Supervisor(self.servers, self.timeline, self.fault_log)
        report: dict[str, Any] = {}
        try:
            from call_downloader.db.migrate import upgrade

            upgrade(self.db_url, wait=30)
            for slot in range(cfg.servers):
                server = ServerProc(slot, self.env, self.dir / f"server-{slot}.log")
                server.start()
                self.servers.append(server)
            for server in self.servers:
                if not services.wait_until(server.ready, 90):
                    raise RuntimeError(f"server {server.slot} not ready; see {server.log_path}")
            token = self.login()
            self.supervisor.start()
            sender = Sender(cfg, self.servers, token, self.host)
            print(
                f"drill {self.run_id}: {cfg.calls} calls over {cfg.send_seconds:.0f}s to "
                f"{cfg.servers} server(s); faults: {', '.join(cfg.faults) or 'none'}",
                flush=True,
            )
            self.timeline = Timeline()
            self.supervisor.timeline = self.timeline
            tracks = chaos.tracks()
            for t in tracks:
                t.start()
            sender.run(self.timeline)
            self.timeline.note("sender", "all sends answered or given up")
            for t in tracks:
                t.join(timeout=max(60.0, cfg.send_seconds))
            self.timeline.note("drill", "faults over; settling")
            services.ensure_all()
            settled = self.settle(sender)
            report = self.verdict(sender, chaos, settled)
        except BaseException:
            chaos.aborted.set()
            raise
        finally:
            chaos.aborted.set()
            self.ai.faults = {}
            self.receiver.mode = "ok"
            try:
                healed = services.ensure_all()
                if healed:
                    print(f"healed after the drill: {healed}")
            finally:
                self.teardown()
        self.write(report)
        return report

    def login(self) -> str:
        r = httpx.post(
            f"{self.servers[0].url}/api/v1/auth/token",
            data={
                "username": self.env["ADMIN_USERNAME"],
                "password": self.env["ADMIN_PASSWORD"],
                "grant_type": "password",
            },
            timeout=30,
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def settle(self, sender: Sender) -> float:
        """Wait until every accepted call is final and the destination has been quiet a while."""
        start = time.monotonic()
        deadline = start + self.cfg.settle_seconds
        accepted = {s.call_id for s in sender.sent.values() if s.call_id}
        last_hits, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = self.query("SELECT id::text, status FROM calls")
            open_calls = [cid for cid, status in rows if cid in accepted and status not in FINAL]
            hits = sum(self.receiver.hits.values())
            if hits != last_hits:
                last_hits, quiet_since = hits, time.monotonic()
            if not open_calls and time.monotonic() - quiet_since > 3.0 and self.poison_parked():
                break
            time.sleep(1.0)
        took = time.monotonic() - start
        self.timeline.note("drill", f"settled after {took:.0f}s")
        return took

    def poison_parked(self) -> bool:
        """Every poison event injected so far sits in a dead-letter queue."""
        expected = {p["body_sha256"] for p in self.chaos.injected_poison}
        if not expected:
            return True
        try:
            parked = {i["sha256"] for items in self.dead_letters().values() for i in items}
        except Exception:
            return False
        return expected <= parked

    def dead_letters(self) -> dict[str, list[dict[str, Any]]]:
        """What sits in each function's dead-letter queue (read, then left in place)."""
        import pika

        out: dict[str, list[dict[str, Any]]] = {}
        conn = pika.BlockingConnection(pika.URLParameters(self.env["RABBITMQ_URL"]))
        try:
            channel = conn.channel()
            for function in ("analyze-duration", "call-ai", "deliver"):
                queue = f"{self.namespace}.{function}.dlq"
                items = []
                while True:
                    method, props, body = channel.basic_get(queue, auto_ack=False)
                    if method is None:
                        break
                    reason = (props.headers or {}).get("x-cd-dead-letter-reason")
                    items.append(
                        {"sha256": hashlib.sha256(body).hexdigest(), "reason": str(reason)[:200]}
                    )
                out[function] = items
        finally:
            conn.close()  # unacked messages go back to their queues
        return out

    def verdict(self, sender: Sender, chaos: Chaos, settle_took: float) -> dict[str, Any]:
        sent = sender.sent
        calls = self.query(
            "SELECT id::text, external_id, status, error_stage, error_reason, sha256 FROM calls"
        )
        db_by_ext: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in calls:
            db_by_ext[row[1]].append(row)
        delivered: dict[str, set[str]] = defaultdict(set)  # external id -> webhook ids
        delivered_calls: dict[str, set[str]] = defaultdict(set)
        corrupted = []
        for webhook_id, info in self.receiver.by_webhook.items():
            ext = info["external_id"]
            delivered[ext].add(webhook_id)
            delivered_calls[ext].add(info["call_id"])
            s = sent.get(ext)
            if s is not None and (info["sha256"] != s.sha256 or info["result_sha256"] != s.sha256):
                corrupted.append(ext)

        accepted = {e: s for e, s in sent.items() if s.outcome == "accepted"}
        lost, stuck, failed = [], [], Counter()
        for ext, s in accepted.items():
            rows = db_by_ext.get(ext, [])
            row = next((r for r in rows if r[0] == s.call_id), None)
            if row is not None and row[2] not in FINAL:
                stuck.append(ext)
                continue
            if ext in delivered:
                continue
            if row is not None and row[2] == "failed" and row[4]:
                failed[f"{row[3]}/{row[4]}"] += 1
                continue
            lost.append(ext)  # no row, failed without a reason, or "delivered" unseen
        duplicated = sorted(
            e
            for e in set(delivered) | set(db_by_ext)
            if len(delivered.get(e, ())) > 1
            or len(delivered_calls.get(e, ())) > 1
            or len(db_by_ext.get(e, ())) > 1
            or (e in sent and sent[e].other_ids)
        )
        unexpected = sorted(
            e
            for e in delivered
            if e not in sent
            or sent[e].outcome == "rejected"
            or (sent[e].call_id is not None and delivered_calls[e] - {sent[e].call_id})
        )
        gave_up = [e for e, s in sent.items() if s.outcome == "gave_up"]
        rejected = {
            e: f"{s.status}: {s.detail}" for e, s in sent.items() if s.outcome == "rejected"
        }
        dlq = self.dead_letters()
        poison_hashes = Counter(p["body_sha256"] for p in chaos.injected_poison)
        dlq_hashes = Counter(item["sha256"] for items in dlq.values() for item in items)
        poison_missing = sum((poison_hashes - dlq_hashes).values())
        # A poison event may sit there twice (dead-lettered, then a crash before the ack):
        # at-least-once into the DLQ as everywhere else; only foreign messages are suspect.
        dlq_other = sum(n for h, n in dlq_hashes.items() if h not in poison_hashes)
        dlq_copies = sum(max(0, dlq_hashes[h] - n) for h, n in poison_hashes.items())
        no_reason = sum(1 for items in dlq.values() for item in items if item["reason"] == "None")
        hits = self.receiver.hits
        fault_crashes = Counter(
            line.split()[2] for line in self.fault_log.read_text().splitlines() if line.strip()
        ) if self.fault_log.exists() else Counter()  # fmt: skip
        ai_requests = sum(self.ai.by_call.values())
        counts = {
            "sent": len(sent),
            "accepted": len(accepted),
            "delivered": sum(1 for e in accepted if e in delivered),
            "failed_with_reason": sum(failed.values()),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "unexpected": len(unexpected),
            "stuck": len(stuck),
            "corrupted": len(corrupted),
            "rejected": len(rejected),
            "gave_up": len(gave_up),
            "poison_injected": len(chaos.injected_poison),
            "poison_not_dead_lettered": poison_missing,
            "dead_letters_other": dlq_other,
            "dead_letters_without_reason": no_reason,
        }
        raw = {
            "webhook_posts_accepted": sum(hits.values()),
            "webhook_ids": len(hits),
            "same_id_redeliveries": sum(hits.values()) - len(hits),
            "destination_answers_by_mode": dict(self.receiver.by_mode),
            "bad_signatures": self.receiver.bad_signatures,
            "ai_requests": ai_requests,
            "ai_calls_asked": len(self.ai.by_call),
            "ai_repeat_requests": ai_requests - len(self.ai.by_call),
            "ai_faults_served": dict(self.ai.by_fault),
            "ai_callbacks_failed": self.ai.callbacks_failed,
            "ingest_attempts": sum(s.attempts for s in sent.values()),
            "ingest_retries": sum(s.attempts - 1 for s in sent.values()),
            "ingest_answers": dict(sender.status_counts),
            "server_restarts": self.supervisor.restarts,
            "server_exit_codes": {str(k): v for k, v in self.supervisor.exit_codes.items()},
            "fault_point_crashes": dict(fault_crashes),
            "duplicate_events_injected": chaos.injected_duplicates,
            "poison_dead_letter_copies": dlq_copies,
            "delivery_attempts_in_db": self.query(
                "SELECT coalesce(sum(attempts), 0) FROM deliveries"
            )[0][0],
            "settle_seconds": round(settle_took, 1),
        }
        checks = ("lost", "duplicated", "unexpected", "stuck", "corrupted", "rejected")
        passed = (
            all(counts[k] == 0 for k in checks)
            and poison_missing == 0
            and dlq_other == 0
            and no_reason == 0
            and not chaos.errors
            and self.receiver.bad_signatures == 0
        )
        return {
            "drill": self.run_id,
            "passed": passed,
            "config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()
            },
            "counts": counts,
            "failed_by_reason": dict(failed),
            "raw": raw,
            "examples": {
                "lost": lost[:20],
                "duplicated": duplicated[:20],
                "unexpected": unexpected[:20],
                "stuck": stuck[:20],
                "corrupted": corrupted[:20],
                "rejected": dict(list(rejected.items())[:10]),
                "gave_up": gave_up[:20],
            },
            "dead_letters": dlq,
            "fault_errors": chaos.errors,
            "timeline": self.timeline.entries,
            "artifacts": str(self.dir),
        }

    def teardown(self) -> None:
        self.supervisor.stopping.set()
        if self.supervisor.is_alive():
            self.supervisor.join(5)
        for server in self.servers:
            server.stop()
        for fake in (self.ai, self.receiver, self.host):
            try:
                fake.stop()
            except Exception:
                pass
        if self.cfg.keep:
            print(f"kept: database {self.db_name}, namespace {self.namespace}")
            return
        try:
            import pika

            from call_downloader.events.broker import Topology

            conn = pika.BlockingConnection(pika.URLParameters(self.env["RABBITMQ_URL"]))
            try:
                Topology(self.namespace).delete(conn.channel())
            finally:
                conn.close()
        except Exception as exc:
            print(f"could not delete the drill's queues: {exc!r}")
        try:
            services.redis_delete_namespace(self.namespace)
        except Exception as exc:
            print(f"could not delete the drill's Redis keys: {exc!r}")
        try:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        except Exception as exc:
            print(f"could not drop {self.db_name}: {exc!r}")

    def write(self, report: dict[str, Any]) -> None:
        path = self.cfg.json_path or (self.dir / "report.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))
        print(format_table(report))
        print(f"report: {path}")


def format_table(report: dict[str, Any]) -> str:
    c, r = report["counts"], report["raw"]
    lines = [
        "",
        f"drill {report['drill']}: {'PASS' if report['passed'] else 'FAIL'}",
        f"{'verdict':<28}{'count':>8}",
        "-" * 36,
    ]
    for key in ("sent", "accepted", "delivered", "failed_with_reason"):
        lines.append(f"{key:<28}{c[key]:>8}")
    lines.append("-" * 36)
    for key in ("lost", "duplicated", "unexpected", "stuck", "corrupted", "rejected", "gave_up"):
        flag = "" if c[key] == 0 else "   <-- !"
        lines.append(f"{key:<28}{c[key]:>8}{flag}")
    lines.append(f"{'poison injected':<28}{c['poison_injected']:>8}")
    lines.append(f"{'poison not in DLQ':<28}{c['poison_not_dead_lettered']:>8}")
    lines.append(f"{'other dead letters':<28}{c['dead_letters_other']:>8}")
    lines.append("-" * 36 + "  raw redeliveries")
    for key in (
        "webhook_posts_accepted", "webhook_ids", "same_id_redeliveries", "ai_requests",
        "ai_repeat_requests", "ingest_retries", "server_restarts", "duplicate_events_injected",
        "delivery_attempts_in_db", "settle_seconds",
    ):  # fmt: skip
        lines.append(f"{key:<28}{r[key]:>8}")
    if r["fault_point_crashes"]:
        lines.append("fault-point crashes: " + json.dumps(r["fault_point_crashes"]))
    if report["failed_by_reason"]:
        lines.append("failed by reason: " + json.dumps(report["failed_by_reason"]))
    if report["fault_errors"]:
        lines.append("faults that could not be injected: " + "; ".join(report["fault_errors"]))
    return "\n".join(lines)


def run_drill(cfg: DrillConfig) -> dict[str, Any]:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per fake request: noise
    return Drill(cfg).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--send-seconds", type=float, default=90.0)
    parser.add_argument("--settle-seconds", type=float, default=300.0)
    parser.add_argument(
        "--faults",
        default=",".join(ALL_FAULTS),
        help=f"comma-separated, from: {', '.join(ALL_FAULTS)} ('none' for a clean run)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url-share", type=float, default=0.2)
    parser.add_argument("--ai-async-share", type=float, default=0.2)
    parser.add_argument("--json", type=Path, default=None, help="where to write the report")
    parser.add_argument("--keep", action="store_true", help="keep the database and queues")
    args = parser.parse_args(argv)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip() and f != "none")
    try:
        cfg = DrillConfig(
            calls=args.calls,
            servers=args.servers,
            send_seconds=args.send_seconds,
            settle_seconds=args.settle_seconds,
            faults=faults,
            seed=args.seed,
            url_share=args.url_share,
            ai_async_share=args.ai_async_share,
            json_path=args.json,
            keep=args.keep,
        )
    except ValueError as exc:
        parser.error(str(exc))
    report = run_drill(cfg)
    return 0 if report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
