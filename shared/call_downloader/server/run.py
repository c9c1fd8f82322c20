"""`make run`: the whole system in one process on one port.

Migrates, then serves every HTTP function (and the UI when built) on PORT, and runs the outbox
relay and the dispatcher (invoking the CloudEvent functions in-process). Without AI_URL or
DELIVERY_URL it starts labelled demo stand-ins. Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from call_downloader.config import get_settings, reset_settings

log = logging.getLogger("call_downloader.run")


def _local_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets for local runs, generated once and kept in the data folder (never in git)."""
    path = data_dir / "local-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    defaults = {
        "JWT_SECRET": lambda: secrets.token_urlsafe(48),
        "DELIVERY_SECRET": lambda: (
            "whsec_" + __import__("base64").b64encode(secrets.token_bytes(32)).decode()
        ),
        "ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
    }
    for name, make in defaults.items():
        if name not in stored:
            stored[name] = make()
            changed = True
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored


def prepare_environment() -> dict[str, str]:
    """Fill in what a newcomer did not configure; returns what was filled in."""
    data_dir = Path(os.environ.get("DATA_DIR", ".data"))
    local = _local_secrets(data_dir)
    filled: dict[str, str] = {}
    for name in ("JWT_SECRET", "DELIVERY_SECRET"):
        if not os.environ.get(name):
            os.environ[name] = filled[name] = local[name]
    # The functions read the client's address from the header the gateway sets (gateway.py).
    os.environ.setdefault("CLIENT_IP_HEADER", "X-Real-IP")
    if not os.environ.get("ADMIN_USERNAME"):
        os.environ["ADMIN_USERNAME"] = filled["ADMIN_USERNAME"] = "admin"
        if not os.environ.get("ADMIN_PASSWORD"):
            os.environ["ADMIN_PASSWORD"] = filled["ADMIN_PASSWORD"] = local["ADMIN_PASSWORD"]
    reset_settings()
    return filled


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_backends() -> list[str]:
    """Use PostgreSQL, Redis and RabbitMQ when configured or answering on their default local
    ports; stand in for each missing one (embedded mode). Returns what was chosen, to print."""
    data_dir = Path(os.environ.get("DATA_DIR", ".data")).resolve()
    notes: list[str] = []
    if not os.environ.get("DATABASE_URL") and not _answers("127.0.0.1", 5432):
        data_dir.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'call-downloader.db'}"
        notes.append(
            f"database: SQLite file {data_dir / 'call-downloader.db'} "
            "(calls and audio; survives restarts)"
        )
    if not os.environ.get("REDIS_URL") and not _answers("127.0.0.1", 6379):
        os.environ["CACHE"] = "none"
        notes.append("cache: none (no Redis)")
    if not os.environ.get("RABBITMQ_URL") and not _answers("127.0.0.1", 5672):
        os.environ["EVENT_TRANSPORT"] = "database"
        os.environ.setdefault("OUTBOX_POLL_SECONDS", "0.2")
        notes.append(
            "events: carried in-process through the database "
            "(same retries, delays and dead letters as on RabbitMQ)"
        )
    reset_settings()
    return notes


def _with_retries(step: Callable[[], object], what: str, timeout: float) -> None:
    """Start-up waits for a service that is still (re)starting instead of exiting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            step()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            print(f"  waiting for {what}: {type(exc).__name__}", flush=True)
            time.sleep(2.0)


def configure_logging() -> None:
    from call_downloader.observability.logs import configure

    configure()


def run() -> int:
    from call_downloader.server.workers import (
        DispatcherProcesses,
        default_count,
        metrics_dir,
        stop_with_parent,
    )

    stop_with_parent()  # `make run` killed with SIGTERM does not forward it
    configure_logging()
    embedded = choose_backends()
    filled = prepare_environment()
    settings = get_settings()
    embedded_mode = settings.event_transport == "database" or settings.database_url.startswith(
        "sqlite"
    )
    extra_dispatchers = default_count(settings.run_dispatcher_processes, embedded=embedded_mode)
    if extra_dispatchers and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before any metric exists: /metrics then sums this process's and the children's.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(Path(settings.data_dir)))
    port = settings.port
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"Call Downloader starting on http://{host}:{port}", flush=True)
    if embedded:
        print(
            "EMBEDDED MODE (fine for trying it, development or one small site; use real "
            "PostgreSQL, Redis and RabbitMQ in production):",
            flush=True,
        )
        for note in embedded:
            print(f"  {note}", flush=True)

    from call_downloader.db.migrate import upgrade

    upgrade(wait=30)

    from werkzeug.serving import make_server

    from call_downloader.server.demo import DemoDestination, demo_ai_app
    from call_downloader.server.ops import serve_in_thread

    started_servers = []
    if not settings.ai_url:
        ai = serve_in_thread(demo_ai_app, "demo-ai")
        started_servers.append(ai)
        os.environ["AI_URL"] = f"http://127.0.0.1:{ai.server_port}/analyze"
        os.environ["AI_PROTOCOL"] = "default"
        print(f"  AI_URL not set: DEMO AI service at {os.environ['AI_URL']}", flush=True)
    if not settings.delivery_url:
        dest = serve_in_thread(DemoDestination(os.environ["DELIVERY_SECRET"]), "demo-destination")
        started_servers.append(dest)
        os.environ["DELIVERY_URL"] = f"http://127.0.0.1:{dest.server_port}/webhook"
        print(
            f"  DELIVERY_URL not set: DEMO destination at {os.environ['DELIVERY_URL']} "
            "(it logs what it receives)",
            flush=True,
        )
    if not os.environ.get("PUBLIC_BASE_URL"):
        os.environ["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    reset_settings()
    from call_downloader.observability.logs import register_configured_secrets

    register_configured_secrets()  # the generated ones too: never in a log line

    from call_downloader.events.broker import declare_topology
    from call_downloader.events.dbqueue import (
        DatabaseDispatcher,
        DatabasePublisher,
        release_all_leases,
    )
    from call_downloader.events.dispatcher import EVENT_FUNCTIONS, Dispatcher, in_process_invoker
    from call_downloader.events.relay import Relay
    from call_downloader.pipeline.destinations import ensure_config_destination
    from call_downloader.security.identity import ensure_admin_user
    from call_downloader.server.gateway import build_gateway

    ensure_admin_user()
    ensure_config_destination()
    invokers = {name: in_process_invoker(name) for name in EVENT_FUNCTIONS}
    dispatcher: Dispatcher | DatabaseDispatcher
    if settings.event_transport == "database":
        release_all_leases()  # work interrupted by the last stop is due again
        relay = Relay(publisher=DatabasePublisher())  # type: ignore[arg-type]
        dispatcher = DatabaseDispatcher(invokers)
    else:
        _with_retries(declare_topology, "RabbitMQ", timeout=60)
        relay = Relay()
        dispatcher = Dispatcher(invokers)
    relay_thread = threading.Thread(target=relay.run, name="outbox-relay", daemon=True)
    relay_thread.start()
    dispatcher.start()
    children = DispatcherProcesses(extra_dispatchers)
    children.start()
    if extra_dispatchers:
        print(
            f"  {extra_dispatchers} more dispatcher process(es) beside this one "
            f"(RUN_DISPATCHER_PROCESSES; pids {', '.join(map(str, children.pids()))})",
            flush=True,
        )

    ui_dir = Path(__file__).resolve().parents[3] / "frontend" / "dist"
    checks: dict[str, Callable[[], str]] = {}
    if extra_dispatchers:
        checks["dispatcher_processes"] = lambda: (
            "ok" if children.alive() else "error: a dispatcher process is restarting"
        )
    server = make_server(host, port, build_gateway(ui_dir, checks, host=host), threaded=True)

    def stop(signum: int, _frame: object) -> None:
        print(f"received signal {signum}: stopping", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"Listening on http://{host}:{port}  (health: /healthz, /readyz; API: /api/v1)", flush=True
    )
    if "ADMIN_PASSWORD" in filled:
        print(
            f"Sign in as admin / {filled['ADMIN_PASSWORD']} "
            f"(generated; kept in {os.environ.get('DATA_DIR', '.data')}/local-secrets.json)",
            flush=True,
        )
    else:
        print(f"Sign in as {settings.admin_username} (password from ADMIN_PASSWORD)", flush=True)
    try:
        server.serve_forever()
    finally:
        children.stop()
        dispatcher.stop()
        relay.stop()
        relay_thread.join(5)
        for s in started_servers:
            s.shutdown()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
