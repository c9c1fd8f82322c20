"""The UI gateway's Nginx configuration (frontend/nginx.conf), run for real on loopback:
rendered as the image's entrypoint renders it, in front of stub upstreams, it must route
like `make run` (call_downloader.server.gateway.route) and serve the UI and /healthz."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from deploy_helpers import ROOT

UPSTREAMS = ("ingest", "auth", "calls")


def envsubst_defined(text: str, env: dict[str, str]) -> str:
    """What the nginx image's 20-envsubst-on-templates.sh does: replace ${VAR} for the
    variables that are set, leave every other $ alone."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m[1], m[0]), text)


def stub(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            payload = json.dumps(
                {
                    "upstream": name,
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "forwarded_for": self.headers.get("X-Forwarded-For"),
                    "real_ip": self.headers.get("X-Real-IP"),
                    "body": body.decode(),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_ip_directives(real_ip_from: str) -> str:
    """What the image's entrypoint gets from frontend/real-ip-from.envsh for REAL_IP_FROM."""
    proc = subprocess.run(
        ["sh", "-c", '. ./frontend/real-ip-from.envsh && printf %s "$NGINX_SET_REAL_IP_FROM"'],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "REAL_IP_FROM": real_ip_from},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@contextlib.contextmanager
def running_gateway(
    tools: Path, tmp: Path, down: str | None = None, real_ip_from: str = ""
) -> Iterator[dict]:
    """Nginx with the gateway config in front of stub upstreams; `down` names an upstream
    whose port nobody listens on; `real_ip_from` as the image's REAL_IP_FROM."""
    html = tmp / "html"
    (html / "assets").mkdir(parents=True)
    (html / "index.html").write_text("<!doctype html><title>ui</title>", encoding="utf-8")
    (html / "assets" / "app-1234.js").write_text("console.log(1)", encoding="utf-8")
    (html / "docs").mkdir()
    (html / "docs" / "index.html").write_text("<!doctype html><title>api</title>", "utf-8")
    stubs = {name: stub(name) for name in UPSTREAMS if name != down}
    env = {f"{n.upper()}_URL": f"http://127.0.0.1:{s.server_address[1]}" for n, s in stubs.items()}
    if down:
        env[f"{down.upper()}_URL"] = f"http://127.0.0.1:{free_port()}"
    # IP-literal upstreams: the resolver is never asked, no traffic leaves loopback.
    env |= {"PROXY_TIMEOUT": "30s", "NGINX_LOCAL_RESOLVERS": "127.0.0.1"}
    env["NGINX_SET_REAL_IP_FROM"] = real_ip_directives(real_ip_from)
    port = free_port()
    site = envsubst_defined((ROOT / "frontend/nginx.conf").read_text(encoding="utf-8"), env)
    assert "${" not in site, "a template variable is not set by frontend/Dockerfile or here"
    # The only test adaptations: a loopback port and the test's document root.
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    site = site.replace("root /usr/share/nginx/html;", f"root {html};")
    (tmp / "site.conf").write_text(site, encoding="utf-8")
    temp_paths = "\n".join(
        f"{kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""  # the workers read the pytest tmp dir
    (tmp / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    types {{ text/html html; application/javascript js; }}
    default_type application/octet-stream;
    access_log off;
    {temp_paths}
    include {tmp}/site.conf;
}}
""",
        encoding="utf-8",
    )
    nginx = str(tools / "nginx")
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.1)
    try:
        yield {"port": port, "stubs": stubs}
    finally:
        proc.terminate()
        proc.wait(10)
        for server in stubs.values():
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def gateway(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with running_gateway(tools, tmp_path_factory.mktemp("nginx")) as gw:
        yield gw


def request(
    gateway: dict,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway["port"], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


CASES = [
    ("POST", "/api/v1/calls", "ingest"),
    ("POST", "/api/v1/calls/", "ingest"),
    ("GET", "/api/v1/calls", "calls"),
    ("GET", "/api/v1/calls?status=failed&page=2", "calls"),
    ("GET", "/api/v1/calls/0b7c6c1e-5d7f-4a8e-9a55-2f1b3c4d5e6f", "calls"),
    ("POST", "/api/v1/calls/0b7c6c1e/retry", "calls"),
    ("POST", "/api/v1/ai/callback/some-token", "ingest"),
    ("POST", "/api/v1/auth/token", "auth"),
    ("GET", "/api/v1/auth/users", "auth"),
    ("DELETE", "/api/v1/auth/api-keys/3", "auth"),
    ("GET", "/api/v1/destinations", "calls"),
    ("PATCH", "/api/v1/destinations/1", "calls"),
    ("GET", "/api/v2/anything", "calls"),
    ("GET", "/api/v1/openapi.json", "calls"),
]


@pytest.mark.parametrize(("method", "path", "upstream"), CASES)
def test_api_routes(gateway: dict, method: str, path: str, upstream: str) -> None:
    body = b'{"external_id": "x"}' if method in ("POST", "PATCH") else None
    status, _, raw = request(
        gateway, method, path, body, {"Content-Type": "application/json"} if body else None
    )
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen["upstream"] == upstream
    assert (seen["method"], seen["path"]) == (method, path), "URI and method pass unchanged"
    if body:
        assert seen["body"] == body.decode()
    # Knative routes on the Host header: it must be the upstream's own name.
    stub_port = gateway["stubs"][upstream].server_address[1]
    assert seen["host"] == f"127.0.0.1:{stub_port}"
    assert seen["forwarded_for"] == "127.0.0.1"
    assert seen["real_ip"] == "127.0.0.1"


@pytest.mark.parametrize(("method", "path", "upstream"), CASES)
def test_same_routes_as_make_run(method: str, path: str, upstream: str) -> None:
    from call_downloader.server.gateway import route

    assert route(method, path.split("?")[0]) == upstream


def test_ui_and_health(gateway: dict) -> None:
    status, headers, body = request(gateway, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = request(gateway, "GET", "/calls/123/timeline")
    assert status == 200 and b"<title>ui</title>" in body, "client-side routes get index.html"
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    status, headers, _ = request(gateway, "GET", "/assets/app-1234.js")
    assert status == 200 and "max-age" in headers["cache-control"]
    status, _, _ = request(gateway, "GET", "/assets/missing.js")
    assert status == 404


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
def test_the_api_reference_page(gateway: dict, path: str) -> None:
    status, _, body = request(gateway, "GET", path)
    assert status == 200 and b"<title>api</title>" in body


def test_health_takes_get_only(gateway: dict) -> None:
    status, headers, body = request(gateway, "POST", "/healthz", b"x")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    assert headers["allow"] == "GET, HEAD"


def test_make_run_serves_the_same_pages(tmp_path: Path) -> None:
    from werkzeug.test import Client

    from call_downloader.server.gateway import Gateway

    (tmp_path / "docs").mkdir()
    (tmp_path / "index.html").write_text("<title>ui</title>", "utf-8")
    (tmp_path / "docs" / "index.html").write_text("<title>api</title>", "utf-8")
    client = Client(Gateway({}, tmp_path))
    for path in ("/docs", "/docs/"):
        assert b"<title>api</title>" in client.get(path).data
    assert b"<title>ui</title>" in client.get("/calls/1").data
    assert client.post("/healthz").status_code == 405
    assert client.get("/healthz").status_code == 200


def test_an_unreachable_function_answers_in_the_api_error_format(
    tools: Path, tmp_path: Path
) -> None:
    with running_gateway(tools, tmp_path, down="auth") as gateway:
        status, headers, body = request(gateway, "POST", "/api/v1/auth/token", b"x")
    assert status == 503
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "service_unavailable"


SPOOFED = {"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6"}


def test_the_client_address_is_the_peer_whatever_the_client_says(gateway: dict) -> None:
    """Issue 16, item 1: the functions read the client's address from X-Real-IP (login delays,
    audit), so the gateway at the edge sets it to the TCP peer and never passes on the client's
    X-Real-IP or X-Forwarded-For as the address."""
    for method, path in (("POST", "/api/v1/auth/token"), ("GET", "/api/v1/calls")):
        status, _, raw = request(gateway, method, path, b"x" if method == "POST" else None, SPOOFED)
        assert status == 200, raw
        assert json.loads(raw)["real_ip"] == "127.0.0.1"


def test_behind_a_listed_proxy_the_address_it_set_is_passed_on(tools: Path, tmp_path: Path) -> None:
    """Behind the Ingress controller (REAL_IP_FROM lists it, here: loopback), its X-Real-IP is
    the client's address; a peer not listed is not believed."""
    with running_gateway(tools, tmp_path, real_ip_from="127.0.0.1/32, ::1") as gateway:
        status, _, raw = request(
            gateway, "POST", "/api/v1/auth/token", b"x", {"X-Real-IP": "203.0.113.7"}
        )
        assert status == 200 and json.loads(raw)["real_ip"] == "203.0.113.7"
    with running_gateway(tools, tmp_path / "other", real_ip_from="10.0.0.0/8") as gateway:
        status, _, raw = request(
            gateway, "POST", "/api/v1/auth/token", b"x", {"X-Real-IP": "203.0.113.7"}
        )
        assert status == 200 and json.loads(raw)["real_ip"] == "127.0.0.1"


def test_real_ip_from_refuses_what_is_not_an_address() -> None:
    proc = subprocess.run(
        ["sh", "-c", ". ./frontend/real-ip-from.envsh"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "REAL_IP_FROM": "10.0.0.0/8; include /etc"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "REAL_IP_FROM" in proc.stderr


def test_the_image_sources_real_ip_from_at_start() -> None:
    """The entrypoint sources /docker-entrypoint.d/*.envsh only when executable."""
    mode = subprocess.run(
        ["git", "ls-files", "-s", "frontend/real-ip-from.envsh"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip
    assert mode == "100755"
    dockerfile = (ROOT / "frontend/Dockerfile").read_text(encoding="utf-8")
    assert "frontend/real-ip-from.envsh /docker-entrypoint.d/" in dockerfile
    assert 'REAL_IP_FROM=""' in dockerfile


def test_make_run_sends_the_same_security_headers() -> None:
    from call_downloader.server.gateway import SECURITY_HEADERS

    text = (ROOT / "frontend/nginx.conf").read_text(encoding="utf-8")
    # The server block's own headers (four spaces in): a location's (Allow on a 405) are not
    # security headers.
    nginx = dict(re.findall(r'^    add_header (\S+) "([^"]*)" always;', text, re.M))
    assert nginx == dict(SECURITY_HEADERS)
