"""Stopping, restarting and healing the machine's shared services for the fault drills.

PostgreSQL, Redis and RabbitMQ on this machine are shared with everyone's tests: every fault
here has a `heal`, and `ensure_all()` brings each service back (waiting until it answers)
whatever state a failed drill left it in. The commands are the machine's documented ones.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import time
from pathlib import Path

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


class ServiceError(RuntimeError):
    pass


def _log_path() -> Path:
    path = Path(os.environ.get("DRILL_SERVICE_LOG", "/tmp/cd-drill-services.log"))  # noqa: S108
    return path


def run(cmd: list[str], timeout: float = 90.0) -> int:
    """Run an admin command; output to the service log (never a pipe: rabbitmqctl children
    can hold a pipe open long after it exits)."""
    with _log_path().open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            return subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=timeout
            ).returncode
        except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
            log.write(f"failed: {exc!r}\n".encode())
            return -1


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_until(check, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


# -- RabbitMQ ----------------------------------------------------------------------------------
def rabbitmq_up(url: str = "amqp://guest:guest@127.0.0.1:5672/%2F") -> bool:
    import pika

    try:
        params = pika.URLParameters(url)
        params.socket_timeout = 2
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
        return True
    except Exception:
        return False


def rabbitmq_stop() -> None:
    run(["rabbitmqctl", "-q", "stop_app"], timeout=60)


def rabbitmq_start(timeout: float = 120.0) -> None:
    if rabbitmq_up():
        return
    run(["rabbitmqctl", "-q", "start_app"], timeout=90)
    if wait_until(rabbitmq_up, 30):
        return
    # The node itself is gone (not only the app): start it the way the machine does.
    run(["rabbitmq-server", "-detached"], timeout=60)
    if not wait_until(rabbitmq_up, timeout):
        raise ServiceError("RabbitMQ did not come back on 127.0.0.1:5672")


# -- PostgreSQL --------------------------------------------------------------------------------
def _pg_version() -> str:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions:
        raise ServiceError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def postgres_up() -> bool:
    import psycopg

    try:
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def postgres_restart() -> None:
    run(["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "restart"])


def postgres_start(timeout: float = 90.0) -> None:
    if postgres_up():
        return
    run(["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"])
    if not wait_until(postgres_up, timeout):
        raise ServiceError("PostgreSQL did not come back on 127.0.0.1:5432")


# -- Redis -------------------------------------------------------------------------------------
def redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:
        return False


def redis_stop() -> None:
    run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], timeout=30)
    wait_until(lambda: not redis_up(), 10, 0.2)


def redis_start(timeout: float = 30.0) -> None:
    if redis_up():
        return
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    run(REDIS_START, timeout=30)
    if not wait_until(redis_up, timeout):
        raise ServiceError("Redis did not come back on 127.0.0.1:6379")


def redis_delete_namespace(namespace: str, url: str = "redis://127.0.0.1:6379/0") -> int:
    """Delete this drill's keys only (others share the server)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    deleted = 0
    for key in client.scan_iter(match=f"{namespace}:*", count=500):
        deleted += client.delete(key)
    return deleted


def ensure_all() -> list[str]:
    """Bring every service back and wait until each answers; returns what had to be healed."""
    healed = []
    errors = []
    for name, up, start in (
        ("postgresql", postgres_up, postgres_start),
        ("redis", redis_up, redis_start),
        ("rabbitmq", rabbitmq_up, rabbitmq_start),
    ):
        if up():
            continue
        healed.append(name)
        try:
            start()
        except ServiceError as exc:
            errors.append(str(exc))
    if errors:
        raise ServiceError("; ".join(errors))
    return healed
