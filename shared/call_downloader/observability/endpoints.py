"""Operational routes every function container serves (/healthz, /readyz, /metrics), and the
per-request instrumentation of its Flask app.

functions-framework routes only POST to a CloudEvent function; a function's main.py calls
`install()` while functions-framework loads it (inside the app context) to add the routes and
the request hooks:
- a log scope per request: function, route, the trace from `traceparent` (or the binary
  CloudEvent's `ce-traceparent`, with `ce-id` and `ce-subject`), a new trace when none came;
- calldl_http_requests_total / _duration_seconds / _in_progress by function and route (the
  matched rule: the Router's rule, else Flask's), method and status;
- one access log line per request (debug level for the probes and /metrics);
- a CloudEvent function's failures answered from `events.answers` (400, 429 or 503 with
  Retry-After), never functions-framework's 500, which the eventing adapter would not retry.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from call_downloader import warmup
from call_downloader.observability import context
from call_downloader.observability.metrics import m, method_label, render

log = logging.getLogger("call_downloader.http")

QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/_/health", "/_/ready"})
# functions-framework's endpoint name for a CloudEvent target's route.
CLOUD_EVENT_ENDPOINT = "cloudevent"
UNMATCHED = "unmatched"


def healthz() -> flask.Response:
    return flask.jsonify({"status": "ok"})


def readiness_answer(
    request: Any, extra: dict[str, Callable[[], str]] | None = None
) -> tuple[dict[str, Any], int]:
    """The body and status of /readyz (every function, and `make run`): the cached verdict
    (`health.cached_readiness`); what each check found only for signed-in staff, since
    error texts name internal hosts."""
    from call_downloader.health import cached_readiness, is_ready

    checks = cached_readiness(extra)
    ok = is_ready(checks)
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
    if _is_staff(request):
        body["checks"] = checks
    return body, 200 if ok else 503


def _is_staff(request: Any) -> bool:
    headers = request.headers
    if not headers.get("Authorization") and not headers.get("X-API-Key"):
        return False  # probes and strangers: no lookup at all
    from call_downloader.security.identity import require

    try:
        require(request, "operator", "viewer")  # admin always passes
        return True
    except Exception:  # wrong credentials, or the database down: the anonymous answer
        return False


def readyz() -> flask.Response:
    warmup.wait()  # ready means warm: the checks run once the warm-up has finished
    body, status = readiness_answer(flask.request)
    response = flask.jsonify(body)
    response.status_code = status
    return response


# The error code of a CloudEvent function's answer, by status (503 otherwise: unavailable).
ANSWER_CODES = {400: "malformed_event", 429: "throttled"}


def _cloud_event_failure(exc: Exception) -> Any:
    """Flask's handler for what a view raised: a CloudEvent function's failure becomes the
    answer of `events.answers`; anything else goes on to Flask's own handling."""
    rule = flask.request.url_rule
    if isinstance(exc, HTTPException) or rule is None or rule.endpoint != CLOUD_EVENT_ENDPOINT:
        return exc if isinstance(exc, HTTPException) else _reraise(exc)
    from call_downloader.events.answers import answer_for

    answer = answer_for(exc)
    response = flask.jsonify(
        {
            "error": {
                "code": ANSWER_CODES.get(answer.status, "unavailable"),
                "message": answer.reason,
            }
        }
    )
    response.status_code = answer.status
    response.headers.update(answer.headers())
    return response


def _reraise(exc: Exception) -> Any:
    raise exc


def metrics() -> flask.Response:
    body, content_type = render()
    return flask.Response(body, 200, content_type=content_type)


# /_/health and /_/ready: the paths OpenFaaS probes (Community Edition probes /_/health for
# both liveness and readiness and ignores the health-path annotations), so they answer
# like /healthz and /readyz.
OPERATIONAL_ROUTES = (
    ("/healthz", healthz),
    ("/readyz", readyz),
    ("/metrics", metrics),
    ("/_/health", healthz),
    ("/_/ready", readyz),
)


def metrics_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """/metrics as a bare WSGI app (the `make run` gateway, the workers' ops port)."""
    body, content_type = render()
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def set_route(rule: str | None) -> None:
    """The route label of the current request (the Router calls this with its matched rule)."""
    if flask.has_request_context():
        flask.g.calldl_route = rule or UNMATCHED
        context.bind(route=flask.g.calldl_route)


def _function_name(explicit: str | None) -> str:
    if explicit:
        return explicit
    # functions/<name>/main.py calls install(): the folder is the function's name.
    caller = sys._getframe(2).f_globals.get("__file__")
    if caller and Path(caller).name == "main.py":
        return Path(caller).parent.name
    return os.environ.get("K_SERVICE") or os.environ.get("FUNCTION_TARGET") or "unknown"


def _before(function: str) -> None:
    warmup.start_now()  # normally started already (install(), or the forked worker)
    headers = flask.request.headers
    fields: dict[str, Any] = {"function": function}
    incoming = context.valid_traceparent(headers.get("traceparent")) or context.valid_traceparent(
        headers.get("ce-traceparent")
    )
    fields["traceparent"] = incoming or context.new_traceparent()
    if headers.get("ce-id"):  # a binary-mode CloudEvent (trigger or dispatcher)
        fields["event_id"] = headers.get("ce-id")
        fields["event_type"] = headers.get("ce-type")
        fields["call_id"] = headers.get("ce-subject")
    g = flask.g
    g.calldl_scope = context.open_scope(**fields)
    g.calldl_started = time.perf_counter()
    g.calldl_function = function
    m().http_in_progress.labels(function).inc()


def _route() -> str:
    route = getattr(flask.g, "calldl_route", None)
    if route:
        return str(route)
    rule = flask.request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _after(response: flask.Response) -> flask.Response:
    g = flask.g
    started = getattr(g, "calldl_started", None)
    if started is None:
        return response
    function = g.calldl_function
    route, method = _route(), method_label(flask.request.method)
    seconds = time.perf_counter() - started
    status = response.status_code
    m().http_requests.labels(function, route, method, str(status)).inc()
    m().http_duration.labels(function, route, method).observe(seconds)
    g.calldl_observed = True
    trace_id = context.get("trace_id")
    if trace_id:  # lets a client quote it: the logs of the request (and its call) share it
        response.headers.setdefault("X-Trace-Id", trace_id)
    level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level,
            "%s %s %d",
            flask.request.method,
            route,
            status,
            extra={
                "method": method,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
            },
        )
    return response


def _teardown(exc: BaseException | None) -> None:
    g = flask.g
    function = getattr(g, "calldl_function", None)
    if function is None:
        return
    if not getattr(g, "calldl_observed", False):  # no response was produced
        route, method = _route(), method_label(flask.request.method)
        m().http_requests.labels(function, route, method, "500").inc()
        m().http_duration.labels(function, route, method).observe(
            time.perf_counter() - g.calldl_started
        )
    m().http_in_progress.labels(function).dec()
    g.calldl_function = None
    token = getattr(g, "calldl_scope", None)
    if token is not None:
        context.close_scope(token)
        g.calldl_scope = None


def install(function: str | None = None) -> None:
    """Add the routes and request hooks to the functions-framework app being built, and start
    the warm-up of the function's deferred modules (call_downloader.warmup). No-op elsewhere,
    e.g. when the dispatcher imports the function in-process (its modules load on first use)."""
    if not flask.has_app_context():
        return
    app = flask.current_app
    name = _function_name(function)
    if not logging.getLogger().handlers:
        # functions-framework configures no logging: JSON lines, as every other process.
        from call_downloader.observability.logs import configure

        configure(settings_secrets=False)  # the warm-up registers the settings' secrets
    warmup.start()  # after the logging: the warm-up may log (and registers the secrets)
    for path, view in OPERATIONAL_ROUTES:
        endpoint = f"cd_ops{path.replace('/', '_')}"
        if endpoint not in app.view_functions:
            app.add_url_rule(path, endpoint, view, methods=["GET"])
    if app.config.get("CALLDL_INSTRUMENTED"):
        return
    app.config["CALLDL_INSTRUMENTED"] = name
    app.register_error_handler(Exception, _cloud_event_failure)
    from call_downloader.http.errors import json_client_errors

    json_client_errors(app)  # an unknown path answers in the API's JSON, like every error
    app.before_request(lambda: _before(name))
    app.after_request(_after)
    app.teardown_request(_teardown)
