"""Small WSGI servers in threads: the demo stand-ins and the workers' operational port
(/healthz and /metrics for the relay and dispatcher containers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from call_downloader.observability.metrics import render


def serve_in_thread(app: Any, name: str, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server


def worker_ops_app(alive: Callable[[], bool]) -> Callable[..., Any]:
    """/healthz answers 200 while the worker's threads run; /metrics exposes its metrics."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body, ctype = render()
            start_response("200 OK", [("Content-Type", ctype)])
            return [body]
        if path == "/healthz":
            ok = alive()
            body = json.dumps({"status": "ok" if ok else "stalled"}).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": {"code": "not_found", "message": "no such endpoint"}}']

    return app
