"""What every benchmark shares: a scratch database, the product server, processes, statistics.

Nothing here is a test (pytest collects `test_*.py` only). Every process the benchmarks start
listens on 127.0.0.1 and is stopped by the harness; every database, RabbitMQ name and Redis
key carries the run's own prefix, so a run never touches another one's data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
# BENCH_ARTIFACTS: elsewhere (the smoke test writes its results into its own temporary folder).
ARTIFACTS = Path(os.environ.get("BENCH_ARTIFACTS") or ROOT / "test-artifacts" / "bench")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
DELIVERY_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN = ("bench-admin", "bench-password-123")
MIB = 1 << 20


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 300 samples is a real sample)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(pct / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(product: float, baseline: float) -> float:
    return product / baseline if baseline else float("nan")


# --- audio bodies ----------------------------------------------------------------------------


def wav_header(data_bytes: int, rate: int = 8000, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM WAV header announcing `data_bytes` of samples."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_bytes(data_bytes: int, seed: int = 1) -> bytes:
    """A WAV of noise: incompressible like real audio, so PostgreSQL's TOAST compression does
    not flatter either side."""
    data_bytes -= data_bytes % 2
    return wav_header(data_bytes) + random_bytes(data_bytes, seed)


def random_bytes(n: int, seed: int = 1) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def multipart(
    fields: dict[str, str], file_bytes: bytes, filename: str = "call.wav"
) -> tuple[bytes, str]:
    """A multipart/form-data body held in memory (the same bytes go to both sides)."""
    boundary = "bench" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
    )
    parts.append(file_bytes)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def streamed_wav_multipart(total_audio_bytes: int) -> tuple[Iterator[bytes], int, str]:
    """A multipart upload of a WAV of `total_audio_bytes`, generated on the fly (never held:
    one random MiB repeated, which is incompressible within each 1 MiB row)."""
    boundary = "bench" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    data_bytes = total_audio_bytes - 44
    header = wav_header(data_bytes)
    block = random_bytes(MIB, seed=3)

    def gen() -> Iterator[bytes]:
        yield head + header
        left = data_bytes
        while left > 0:
            piece = block if left >= MIB else block[:left]
            left -= len(piece)
            yield piece
        yield tail

    length = len(head) + 44 + data_bytes + len(tail)
    return gen(), length, f"multipart/form-data; boundary={boundary}"


# --- database --------------------------------------------------------------------------------


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def database_name(url: str) -> str:
    """The database a `postgresql://.../name` URL points at (query string left out)."""
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def drop_database(name: str) -> None:
    import psycopg

    # Other sessions may restart PostgreSQL (fault drills): retry for a while.
    for attempt in range(30):
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.Error as exc:
            if attempt == 29:
                log(f"could not drop database {name}: {exc}")
            time.sleep(2)


# Another checkout's `shared/` and `functions/` to run as the product (A/B comparisons of a
# change: `bench_main.py --product-tree DIR`); None: this checkout.
PRODUCT_TREE: Path | None = None


def _pythonpath() -> str:
    extra = os.environ.get("BENCH_EXTRA_PYTHONPATH", "")
    tree = f"{PRODUCT_TREE / 'shared'}:" if PRODUCT_TREE else ""
    return extra + tree + str(BENCH_DIR)


def migrate(url: str) -> None:
    """Alembic upgrade in a child process (the library caches settings per process)."""
    subprocess.run(
        [
            PYTHON,
            "-c",
            "import sys; from call_downloader.db.migrate import upgrade; "
            "upgrade(sys.argv[1], wait=30)",
            url,
        ],
        check=True,
        cwd=ROOT,
        env=base_env(url, "cdbench_migrate"),
        capture_output=True,
        timeout=180,
    )


def base_env(database_url: str, namespace: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "RABBITMQ_URL": RABBITMQ_URL,
            "EVENT_NAMESPACE": namespace,
            "JWT_SECRET": "bench-jwt-secret-" + namespace,
            "DELIVERY_SECRET": DELIVERY_SECRET,
            "ADMIN_USERNAME": ADMIN[0],
            "ADMIN_PASSWORD": ADMIN[1],
            # One token lasts the whole run.
            "ACCESS_TOKEN_MINUTES": "240",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": _pythonpath(),
        }
    )
    env.update(extra)
    return env


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def spawn(
    name: str, argv: list[str], env: dict[str, str], url: str, ready_path: str, timeout: float = 90
) -> Proc:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"{name}.log"
    popen = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    proc = Proc(name, popen, url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{proc.tail()}")
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"{name} not ready in {timeout}s:\n{proc.tail()}")


@contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def start_peers() -> Proc:
    """The instant AI and the instant destination (tests/bench/bench_peers.py)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return spawn(
        "peers",
        [PYTHON, str(BENCH_DIR / "bench_peers.py"), str(port)],
        dict(os.environ, PYTHONUNBUFFERED="1"),
        url,
        "/healthz",
    )


class Peers:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.url = proc.url
        self.http = httpx.Client(timeout=30)

    def reset(self) -> None:
        self.http.post(f"{self.url}/reset").raise_for_status()

    def receipts(self) -> dict[str, float]:
        r = self.http.get(f"{self.url}/receipts")
        r.raise_for_status()
        return {k: float(v) for k, v in r.json().items()}

    def wait_one(self, call_id: str, timeout: float = 120.0) -> float:
        r = self.http.get(
            f"{self.url}/wait", params={"id": call_id, "timeout": timeout}, timeout=timeout + 10
        )
        if r.status_code != 200:
            raise RuntimeError(f"call {call_id} never reached the destination")
        return float(r.json()["at"])

    def wait_receipts(self, ids: set[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        got: dict[str, float] = {}
        while time.monotonic() < deadline:
            got = self.receipts()
            if ids <= got.keys():
                return got
            time.sleep(0.05)
        missing = len(ids - got.keys())
        raise RuntimeError(f"{missing} of {len(ids)} calls never reached the destination")


def start_product(database_url: str, namespace: str, peers_url: str, **extra: str) -> Proc:
    """`call-downloader run` (the `make run` server) wired to the instant peers."""
    port = free_port()
    data_dir = ARTIFACTS / f"data-{namespace}"
    env = base_env(
        database_url,
        namespace,
        PORT=str(port),
        AI_URL=f"{peers_url}/analyze",
        AI_PROTOCOL="default",
        DELIVERY_URL=f"{peers_url}/hook",
        DATA_DIR=str(data_dir),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        **extra,
    )
    proc = spawn(
        f"product-{namespace}",
        [str(VENV_BIN / "call-downloader"), "run"],
        env,
        f"http://127.0.0.1:{port}",
        "/readyz",
    )
    proc.info["database"] = database_name(database_url)
    return proc


def start_baseline(database_url: str, namespace: str, peers_url: str, workers: int) -> Proc:
    port = free_port()
    env = base_env(database_url, namespace)
    proc = spawn(
        f"baseline-{namespace}",
        [
            PYTHON,
            str(BENCH_DIR / "bench_baseline.py"),
            "--port",
            str(port),
            "--database-url",
            database_url,
            "--rabbitmq-url",
            RABBITMQ_URL,
            "--namespace",
            namespace,
            "--ai-url",
            f"{peers_url}/analyze",
            "--delivery-url",
            f"{peers_url}/hook",
            "--workers",
            str(workers),
        ],
        env,
        f"http://127.0.0.1:{port}",
        "/healthz",
    )
    proc.info["database"] = database_name(database_url)
    return proc


def admin_token(server_url: str) -> str:
    r = httpx.post(
        f"{server_url}/api/v1/auth/token",
        data={"username": ADMIN[0], "password": ADMIN[1], "grant_type": "password"},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def cleanup_rabbitmq(namespace: str) -> None:
    """Delete the run's exchanges and queues (names carry the run's namespace)."""
    import pika

    from call_downloader.events.broker import Topology

    try:
        conn = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    except Exception as exc:
        log(f"could not clean RabbitMQ names of {namespace}: {exc!r}")
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


def cleanup_redis(namespace: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{namespace}*", count=500):
            client.delete(key)
    except Exception as exc:
        log(f"could not clean Redis keys of {namespace}: {exc!r}")


# --- memory ----------------------------------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    """Live descendants of `pid` (`make run` starts dispatcher processes beside the server)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            found.append(kid)
            found.extend(child_pids(kid))
    return found


def _own_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def rss_bytes(pid: int) -> int:
    """Resident set of the process and its live descendants."""
    total = _own_rss(pid)
    for kid in child_pids(pid):
        try:
            total += _own_rss(kid)
        except (OSError, RuntimeError):  # exited meanwhile
            pass
    return total


class RssSampler:
    """Samples a process's resident set every few milliseconds; `peak` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        self.start_rss = rss_bytes(pid)
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.peak = max(self.peak, rss_bytes(self.pid))
        except (OSError, RuntimeError):
            pass

    @property
    def growth(self) -> int:
        return self.peak - self.start_rss


def _stat_ticks(pid: int) -> int:
    # utime + stime of the process, plus cutime + cstime of its children already reaped.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) and its descendants have used."""
    ticks = _stat_ticks(pid)
    for kid in child_pids(pid):
        try:
            ticks += _stat_ticks(kid)
        except (OSError, IndexError):  # exited meanwhile (then counted in the parent's cutime)
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


# --- CPU by process group ------------------------------------------------------------------
#
# Where the machine's CPU goes while one system runs: every process's utime + stime, sampled
# from /proc, attributed to a group. Backends and dispatcher children come and go during a
# round, so a sampler thread reads every process every ~0.5 s; a process's share is its last
# seen ticks minus its ticks at the start (0 if it appeared later). What a process spends after
# its last sample, and processes that live less than one interval, land in "other" (the
# machine's total from /proc/stat minus the groups).

CPU_GROUPS = ("server", "postgres", "postgres-shared", "rabbitmq", "peers", "client", "other")

# A process: its pid, or (pid, start time) so a reused pid is a new process.
ProcKey = int | tuple[int, int]
# Process -> (command line with NULs as spaces, utime + stime in clock ticks).
Snapshot = dict[ProcKey, tuple[str, int]]


def _key_pid(key: ProcKey) -> int:
    return key[0] if isinstance(key, tuple) else key


def cpu_group(
    pid: int,
    cmdline: str,
    *,
    database: str,
    server_pids: set[int] | frozenset[int],
    peers_pid: int | None,
    client_pid: int | None,
) -> str:
    """The group a process's CPU counts in while the system on `database` runs."""
    if pid in server_pids:
        return "server"
    if pid == peers_pid:
        return "peers"
    if pid == client_pid:
        return "client"
    tokens = cmdline.split()
    if not tokens:
        return "other"  # kernel thread, zombie
    program = os.path.basename(tokens[0])
    if program == "beam.smp":
        return "rabbitmq"
    if tokens[0] in ("postgres:", "postmaster:"):
        # "postgres: 15/main: <user> <database> <host>(<port>) <state>" for a backend,
        # "postgres: 15/main: checkpointer" and the like for PostgreSQL's own processes.
        if "autovacuum" in tokens:
            return "postgres-shared"
        if database in tokens[1:]:
            return "postgres"
        if any(t == "[local]" or (t.endswith(")") and "(" in t) for t in tokens[1:]):
            return "other"  # a session on another database
        return "postgres-shared"
    if program in ("postgres", "postmaster"):
        return "postgres-shared"  # the postmaster (and a backend not yet titled)
    return "other"


def attribute_cpu(
    start: Snapshot,
    last: Snapshot,
    *,
    database: str,
    server_pids: set[int] | frozenset[int] = frozenset(),
    peers_pid: int | None = None,
    client_pid: int | None = None,
    busy_ticks: int | None = None,
) -> dict[str, int]:
    """Clock ticks per group (CPU_GROUPS) between `start` and `last`.

    `last` holds the last seen state of every process seen during the window, vanished ones
    included; a process in `start` and not in `last` adds nothing, one not in `start` counts
    from 0. "other" is `busy_ticks` (the machine's busy ticks over the window) minus the other
    groups when given, else 0.
    """
    ticks = dict.fromkeys(CPU_GROUPS, 0)
    for key, (cmdline, now) in last.items():
        before = start[key][1] if key in start else 0
        if now <= before:
            continue
        if not cmdline and key in start:
            cmdline = start[key][0]
        group = cpu_group(
            _key_pid(key),
            cmdline,
            database=database,
            server_pids=server_pids,
            peers_pid=peers_pid,
            client_pid=client_pid,
        )
        if group != "other":
            ticks[group] += now - before
    if busy_ticks is not None:
        ticks["other"] = busy_ticks - sum(ticks.values())
    return ticks


def _read_proc(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)  # cheaper than open(): the sampler reads every process
    try:
        return os.read(fd, 4096)  # a longer command line is cut; its first words matter
    finally:
        os.close(fd)


def _title_may_change(cmdline: str) -> bool:
    # PostgreSQL retitles its processes (a new backend starts with the postmaster's command
    # line; a backend's state changes); other processes keep theirs.
    return not cmdline or "postgres" in cmdline.split(" ", 1)[0]


def process_snapshot(known: Snapshot | None = None) -> Snapshot:
    """Every process on the machine, keyed by (pid, start time). A process in `known` keeps
    its command line from there unless PostgreSQL may have retitled it."""
    snap: Snapshot = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = _read_proc(f"/proc/{name}/stat").rpartition(b")")[2].split()
            # After the ")": state is field 3, utime 14, stime 15, starttime 22.
            key = (int(name), int(fields[19]))
            ticks = int(fields[11]) + int(fields[12])
            seen = known.get(key) if known else None
            if seen is not None and not _title_may_change(seen[0]):
                cmdline = seen[0]
            else:
                raw = _read_proc(f"/proc/{name}/cmdline")
                cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            snap[key] = (cmdline, ticks)
        except (OSError, IndexError, ValueError):  # gone between listdir and open
            continue
    return snap


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


class CpuSampler:
    """CPU by group (CPU_GROUPS) while the block runs, for the system serving from
    `server_pid` (and its descendants) on `database`."""

    def __init__(
        self,
        database: str,
        server_pid: int,
        peers_pid: int | None = None,
        client_pid: int | None = None,
        interval: float = 0.5,
    ) -> None:
        self.database = database
        self.server_pid = server_pid
        self.peers_pid = peers_pid
        self.client_pid = os.getpid() if client_pid is None else client_pid
        self.interval = interval
        self.server_pids: set[int] = set()
        self.start: Snapshot = {}
        self.last: Snapshot = {}
        self.sampler_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.server_pids.add(self.server_pid)
        self.server_pids.update(child_pids(self.server_pid))
        for key, (cmdline, ticks) in process_snapshot(self.last).items():
            if not cmdline and key in self.last:  # a zombie has no command line any more
                cmdline = self.last[key][0]
            self.last[key] = (cmdline, ticks)

    def _run(self) -> None:
        began = time.thread_time()
        while not self._stop.wait(self.interval):
            self._sample()
        self.sampler_cpu_s = time.thread_time() - began

    def __enter__(self) -> CpuSampler:
        self._wall0 = time.monotonic()
        self._busy0, self._steal0 = machine_ticks()
        self._sample()
        self.start = dict(self.last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy1, steal1 = machine_ticks()
        self.wall_s = time.monotonic() - self._wall0
        self.busy_ticks = busy1 - self._busy0
        self.steal_ticks = steal1 - self._steal0

    def ticks(self) -> dict[str, int]:
        return attribute_cpu(
            self.start,
            self.last,
            database=self.database,
            server_pids=self.server_pids,
            peers_pid=self.peers_pid,
            client_pid=self.client_pid,
            busy_ticks=self.busy_ticks,
        )

    def report(self, calls: int) -> dict[str, Any]:
        """Per call: ms of CPU by group; over the window: cores busy (out of `cpus`)."""
        hz = os.sysconf("SC_CLK_TCK")
        return {
            "cpu_ms_per_call": {
                g: round(t / hz / calls * 1000, 2) for g, t in self.ticks().items()
            },
            "cores_busy": round(self.busy_ticks / hz / self.wall_s, 2),
            "cores_steal": round(self.steal_ticks / hz / self.wall_s, 2),
            "cpus": os.cpu_count(),
            "cpu_window_s": round(self.wall_s, 2),
            "sampler_cpu_ms": round(self.sampler_cpu_s * 1000, 1),
        }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
