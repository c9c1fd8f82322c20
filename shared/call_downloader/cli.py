"""`call-downloader` command line: run, migrate, relay, dispatcher, topology, users."""

from __future__ import annotations

import argparse
import shlex
import sys


def _migrate(args: argparse.Namespace) -> int:
    from call_downloader.db.migrate import upgrade
    from call_downloader.pipeline.destinations import ensure_config_destination
    from call_downloader.security.identity import ensure_admin_user

    upgrade(wait=args.wait)
    ensure_admin_user()
    ensure_config_destination()
    print("database migrated")
    return 0


def _relay(args: argparse.Namespace) -> int:
    import signal

    from call_downloader.events.relay import Relay
    from call_downloader.observability.logs import configure

    configure()
    relay = Relay()
    signal.signal(signal.SIGTERM, lambda *_: relay.stopped.set())
    signal.signal(signal.SIGINT, lambda *_: relay.stopped.set())
    _serve_ops(args.health_port, lambda: not relay.stopped.is_set())
    relay.run()
    relay.stop()
    return 0


def _serve_ops(port: int | None, alive) -> None:  # type: ignore[no-untyped-def]
    """The worker's /healthz and /metrics on `port` (0.0.0.0: probed from outside the pod)."""
    if port:
        from call_downloader.server.ops import serve_in_thread, worker_ops_app

        serve_in_thread(worker_ops_app(alive), "ops", host="0.0.0.0", port=port)  # noqa: S104


STOP_GRACE_SECONDS = 25.0


def _exit_when_orphaned() -> None:
    """In a dispatcher process started by `make run`: a thread of its own exits the process
    once its server has been gone for the stop grace, whatever the main thread is doing
    (still starting up, or stuck). The death signal and the main loop's check stop it sooner;
    this is the backstop (a child once outlived its SIGKILLed server in `test_run_processes`)."""
    import os
    import threading
    import time

    from call_downloader.server.workers import PARENT_ENV, parent_gone

    if not os.environ.get(PARENT_ENV):
        return

    def watch() -> None:
        while not parent_gone():
            time.sleep(1.0)
        time.sleep(STOP_GRACE_SECONDS + 2.0)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _dispatcher(args: argparse.Namespace) -> int:
    import os
    import signal
    import threading

    _exit_when_orphaned()  # first: before the imports below
    from call_downloader.events.dispatcher import (
        EVENT_FUNCTIONS,
        Dispatcher,
        http_invoker,
        in_process_invoker,
    )
    from call_downloader.observability.logs import configure
    from call_downloader.server.workers import die_with_parent, parent_gone

    die_with_parent()  # only when `make run` started this process
    configure()
    names = list(EVENT_FUNCTIONS) if args.function == "all" else [args.function]
    for name in names:
        if name not in EVENT_FUNCTIONS:
            print(
                f"unknown function {name!r}; one of {', '.join(EVENT_FUNCTIONS)}", file=sys.stderr
            )
            return 2
    urls = dict(u.split("=", 1) for u in args.invoke_url if "=" in u)
    plain = [u for u in args.invoke_url if "=" not in u]
    if plain and len(names) == 1:
        urls[names[0]] = plain[0]
    invokers = {
        name: http_invoker(urls[name]) if name in urls else in_process_invoker(name)
        for name in names
    }
    dispatcher = Dispatcher(invokers, concurrency=args.concurrency)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    dispatcher.start()
    _serve_ops(args.health_port, dispatcher.alive)
    while not done.wait(1.0):
        if parent_gone():  # started by `make run`, whose server is gone
            break
    # In-flight events get STOP_GRACE_SECONDS to finish (within Kubernetes' default 30 s);
    # after that the process exits anyway and RabbitMQ redelivers what was not acked.
    deadline = threading.Timer(STOP_GRACE_SECONDS, os._exit, args=(1,))
    deadline.daemon = True  # a clean stop exits at once, without waiting for it
    deadline.start()
    dispatcher.stop()
    return 0


def _topology(args: argparse.Namespace) -> int:
    from call_downloader.events.broker import connection_parameters, declare_topology, topology

    if args.print_policies:
        vhost = connection_parameters().virtual_host
        for policy in topology().policies():
            print(shlex.join(policy.rabbitmqctl(vhost)))
        return 0
    topo = declare_topology()
    print(f"declared exchange {topo.exchange} and the function queues")
    return 0


def _run(args: argparse.Namespace) -> int:
    from call_downloader.server.run import run

    return run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="call-downloader")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the whole system on one port (make run)").set_defaults(fn=_run)
    p = sub.add_parser("migrate", help="wait for the database, migrate, create the admin")
    p.add_argument("--wait", type=float, default=60.0)
    p.set_defaults(fn=_migrate)
    p = sub.add_parser("relay", help="publish committed outbox events")
    p.add_argument("--health-port", type=int, default=None, help="serve /healthz and /metrics")
    p.set_defaults(fn=_relay)
    p = sub.add_parser("dispatcher", help="consume a function's queue and invoke it")
    p.add_argument("--function", default="all")
    p.add_argument(
        "--invoke-url",
        action="append",
        default=[],
        help="URL (or name=URL) to POST CloudEvents to; in-process when omitted",
    )
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--health-port", type=int, default=None, help="serve /healthz and /metrics")
    p.set_defaults(fn=_dispatcher)
    p = sub.add_parser("topology", help="declare the RabbitMQ topology")
    p.add_argument(
        "--print-policies",
        action="store_true",
        help="print the rabbitmqctl commands RABBITMQ_DEAD_LETTERING=policy needs; declare nothing",
    )
    p.set_defaults(fn=_topology)
    try:
        from call_downloader.security.cli import register

        register(sub)
    except ImportError:
        pass
    args = parser.parse_args(argv)
    from call_downloader.config import ConfigurationError

    try:
        return int(args.fn(args) or 0)
    except ConfigurationError as exc:  # refuse to start, naming the setting at fault
        print(f"call-downloader {args.command}: configuration refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
