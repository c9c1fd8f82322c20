"""Operational routes every function container serves: /healthz, /readyz and /metrics.

functions-framework routes only POST to a CloudEvent function; a function's main.py calls
`install()` while functions-framework loads it (inside the app context) to add these.
"""

from __future__ import annotations

import flask

from call_downloader.health import readiness
from call_downloader.observability.metrics import render


def healthz() -> flask.Response:
    return flask.jsonify({"status": "ok"})


def readyz() -> flask.Response:
    checks = readiness()
    ok = all(v == "ok" for v in checks.values())
    response = flask.jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    return response


def metrics() -> flask.Response:
    body, content_type = render()
    return flask.Response(body, 200, content_type=content_type)


def install() -> None:
    """Add the routes to the functions-framework app being built (no-op elsewhere, e.g. when
    the dispatcher imports the function in-process)."""
    if not flask.has_app_context():
        return
    app = flask.current_app
    for path, view in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        endpoint = f"cd_ops{path.replace('/', '_')}"
        if endpoint not in app.view_functions:
            app.add_url_rule(path, endpoint, view, methods=["GET"])
