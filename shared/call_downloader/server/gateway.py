"""One WSGI app for `make run`: every HTTP function under its path, health, and the UI.

It does what the Nginx gateway (frontend/nginx.conf) does in the container deployment: the
same routing table, the same security headers, and the client's address for the functions in
X-Real-IP (CLIENT_IP_HEADER), set here from the TCP peer whatever the client sent (or, behind
a proxy listed in REAL_IP_FROM, from the X-Real-IP that proxy set). /metrics answers only
callers on this machine or signed-in staff when the server listens beyond loopback.
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from call_downloader.events.dispatcher import repo_root

WSGIApp = Callable[..., Iterable[bytes]]
HTTP_FUNCTIONS = {"ingest": "ingest", "auth": "auth", "calls": "calls"}
REAL_IP_HEADER = "X-Real-IP"
# Every answer carries them, as from frontend/nginx.conf (tests/deploy compares the two).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
        "form-action 'self'",
    ),
)


def function_app(folder: str, target: str) -> WSGIApp:
    import functions_framework

    source = repo_root() / "functions" / folder / "main.py"
    return functions_framework.create_app(target, str(source), "http")  # type: ignore[no-any-return]


def route(method: str, path: str) -> str | None:
    """Which function serves this request (None: not an API path)."""
    if path.startswith("/api/v1/auth"):
        return "auth"
    if (method == "POST" and path.rstrip("/") == "/api/v1/calls") or path.startswith("/api/v1/ai/"):
        return "ingest"
    if path.startswith("/api/"):
        return "calls"
    return None


OPERATIONAL = frozenset({"/healthz", "/readyz"})


def _method_not_allowed(start_response: Any) -> list[bytes]:
    data = json.dumps(
        {"error": {"code": "method_not_allowed", "message": "method not allowed"}}
    ).encode()
    start_response(
        "405 Method Not Allowed",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Allow", "GET, HEAD"),
        ],
    )
    return [data]


def _json(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _is_loopback(address: object) -> bool:
    parsed = _address(str(address))
    return parsed is not None and parsed.is_loopback


def _with_security_headers(start_response: Any) -> Any:
    def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        present = {name.lower() for name, _ in headers}
        extra = [(n, v) for n, v in SECURITY_HEADERS if n.lower() not in present]
        return start_response(status, headers + extra, *exc_info)

    return start


class Gateway:
    def __init__(
        self,
        apps: dict[str, WSGIApp],
        ui_dir: Path | None = None,
        extra: dict[str, WSGIApp] | None = None,
        checks: dict[str, Callable[[], str]] | None = None,
        *,
        client_ip_header: str = "",
        real_ip_from: Sequence[str] = (),
        metrics_open_to_all: bool = True,
    ) -> None:
        self.apps = apps
        self.ui_dir = ui_dir if ui_dir and (ui_dir / "index.html").exists() else None
        self.extra = extra or {}
        self.checks = checks or {}  # more /readyz checks: name -> "ok" or "error: ..."
        self.client_ip_key = _environ_key(client_ip_header) if client_ip_header else None
        self.real_ip_from = [ipaddress.ip_network(r, strict=False) for r in real_ip_from]
        self.metrics_open_to_all = metrics_open_to_all

    def client_address(self, environ: dict[str, Any]) -> str:
        """The TCP peer; behind a proxy of REAL_IP_FROM, the X-Real-IP that proxy set."""
        peer = str(environ.get("REMOTE_ADDR", ""))
        peer_address = _address(peer)
        if peer_address is not None and any(peer_address in r for r in self.real_ip_from):
            told = _address(str(environ.get(_environ_key(REAL_IP_HEADER), "")))
            if told is not None:
                return str(told)
        return peer

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response = _with_security_headers(start_response)
        address = self.client_address(environ)
        if self.client_ip_key:
            environ[self.client_ip_key] = address  # whatever the client sent is replaced
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if (path in self.extra or path in OPERATIONAL) and method not in ("GET", "HEAD"):
            return _method_not_allowed(start_response)
        if path in self.extra:
            if path == "/metrics" and not self.metrics_open_to_all and not _is_loopback(address):
                return self._staff_only(environ, start_response, self.extra[path])
            return self.extra[path](environ, start_response)
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            from werkzeug.wrappers import Request

            from call_downloader.observability.endpoints import readiness_answer

            body, status = readiness_answer(Request(environ), self.checks)
            return _json(
                start_response, "200 OK" if status == 200 else "503 Service Unavailable", body
            )
        name = route(method, path)
        if name is not None:
            return self.apps[name](environ, start_response)
        return self._static(path, start_response)

    def _staff_only(self, environ: dict[str, Any], start_response: Any, app: WSGIApp) -> Any:
        from werkzeug.wrappers import Request

        from call_downloader.http.errors import ApiError
        from call_downloader.security.identity import require

        try:
            require(Request(environ), "operator", "viewer")
        except ApiError as exc:
            status = f"{exc.status} {HTTPStatus(exc.status).phrase}"
            return _json(
                start_response, status, {"error": {"code": exc.code, "message": exc.message}}
            )
        return app(environ, start_response)

    def _static(self, path: str, start_response: Any) -> Iterable[bytes]:
        if self.ui_dir is None:
            return _json(
                start_response,
                "200 OK",
                {
                    "service": "call-downloader",
                    "ui": "not built (run `make ui`)",
                    "api": "/api/v1",
                },
            )
        target = (self.ui_dir / path.lstrip("/")).resolve()
        if target.is_dir():
            target = target / "index.html"  # /docs: the API reference page beside the app
        if not target.is_relative_to(self.ui_dir.resolve()) or not target.is_file():
            target = self.ui_dir / "index.html"  # single-page app: the router handles it
        data = target.read_bytes()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        cache = "no-cache" if target.name == "index.html" else "public, max-age=3600"
        start_response(
            "200 OK",
            [("Content-Type", ctype), ("Content-Length", str(len(data))), ("Cache-Control", cache)],
        )
        return [data]


def build_gateway(
    ui_dir: Path | None = None,
    checks: dict[str, Callable[[], str]] | None = None,
    *,
    host: str = "127.0.0.1",
) -> Gateway:
    """The gateway for a server listening on `host`."""
    from call_downloader.config import get_settings

    apps = {}
    for folder, target in HTTP_FUNCTIONS.items():
        if (repo_root() / "functions" / folder / "main.py").exists():
            apps[folder] = function_app(folder, target)
    from call_downloader.observability.endpoints import metrics_wsgi

    settings = get_settings()
    # /metrics: every function of this process (they all run in it), like each container's.
    return Gateway(
        apps,
        ui_dir,
        extra={"/metrics": metrics_wsgi},
        checks=checks,
        client_ip_header=settings.client_ip_header,
        real_ip_from=settings.real_ip_from,
        # Listening on loopback only, every caller is on this machine already.
        metrics_open_to_all=host == "localhost" or _is_loopback(host),
    )
