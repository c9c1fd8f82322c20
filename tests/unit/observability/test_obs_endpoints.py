"""The request hooks endpoints.install() adds to a function's Flask app: metrics by matched
route (not the raw path), status and method; a log scope with the incoming or a new trace;
the binary CloudEvent headers; /metrics itself."""

from __future__ import annotations

import logging

import flask
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from call_downloader.http.errors import ApiError
from call_downloader.http.routing import Router
from call_downloader.observability import context, endpoints, logs

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FN = "unit-http"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def app():
    router = Router(FN)
    seen: dict[str, dict] = {}

    @router.route("/api/v1/things/<call_id>", methods=["GET"])
    def thing(request, call_id):
        seen["thing"] = context.current()
        logging.getLogger("call_downloader.test").info("looking at a thing")
        return {"id": call_id}

    @router.route("/api/v1/fail", methods=["POST"])
    def fail(request):
        raise ApiError(422, "invalid", "no")

    @router.route("/api/v1/crash", methods=["POST"])
    def crash(request):
        raise RuntimeError("boom")

    flask_app = flask.Flask("unit")

    @flask_app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @flask_app.route("/<path:path>", methods=["GET", "POST", "PATCH"])
    def entry(path):
        if path == "" and flask.request.method == "POST":  # a CloudEvent function's entry
            seen["event"] = context.current()
            return "OK"
        return router(flask.request)

    with flask_app.app_context():
        endpoints.install(FN)
        endpoints.install(FN)  # a second load of main.py adds nothing twice
    flask_app.seen = seen  # type: ignore[attr-defined]
    return flask_app


def requests(route: str, method: str, status: str) -> float:
    return value(
        "calldl_http_requests_total", function=FN, route=route, method=method, status=status
    )


def test_route_label_is_the_rule_not_the_path(app):
    route = "/api/v1/things/<call_id>"
    before = requests(route, "GET", "200")
    n = value("calldl_http_request_duration_seconds_count", function=FN, route=route, method="GET")
    client = app.test_client()
    for i in range(3):
        assert client.get(f"/api/v1/things/id-{i}").status_code == 200
    assert requests(route, "GET", "200") == before + 3
    duration_count = value(
        "calldl_http_request_duration_seconds_count", function=FN, route=route, method="GET"
    )
    assert duration_count == n + 3
    assert value("calldl_http_requests_in_progress", function=FN) == 0
    body = REGISTRY.get_sample_value
    assert body("calldl_http_requests_total", {"route": "/api/v1/things/id-1"}) is None


def test_statuses_of_errors_and_unmatched_paths(app):
    client = app.test_client()
    b422 = requests("/api/v1/fail", "POST", "422")
    b500 = requests("/api/v1/crash", "POST", "500")
    b404 = requests(endpoints.UNMATCHED, "GET", "404")
    b405 = requests(endpoints.UNMATCHED, "PATCH", "405")
    assert client.post("/api/v1/fail").status_code == 422
    assert client.post("/api/v1/crash").status_code == 500
    assert client.get("/no/such/path/12345").status_code == 404
    assert client.patch("/api/v1/fail").status_code == 405
    assert requests("/api/v1/fail", "POST", "422") == b422 + 1
    assert requests("/api/v1/crash", "POST", "500") == b500 + 1
    assert requests(endpoints.UNMATCHED, "GET", "404") == b404 + 1
    assert requests(endpoints.UNMATCHED, "PATCH", "405") == b405 + 1


def test_incoming_traceparent_and_call_id_reach_the_log_scope(app):
    r = app.test_client().get("/api/v1/things/abc", headers={"traceparent": TRACEPARENT})
    assert r.headers["X-Trace-Id"] == TRACEPARENT.split("-")[1]
    seen = app.seen["thing"]
    assert seen["trace_id"] == TRACEPARENT.split("-")[1]
    assert seen["traceparent"] == TRACEPARENT
    assert seen["call_id"] == "abc"
    assert seen["function"] == FN and seen["route"] == "/api/v1/things/<call_id>"
    assert context.current() == {}  # the scope ended with the request


def test_a_request_without_a_trace_gets_a_new_one_each_time(app):
    client = app.test_client()
    client.get("/api/v1/things/a", headers={"traceparent": "not-a-traceparent"})
    first = app.seen["thing"]["traceparent"]
    client.get("/api/v1/things/a")
    second = app.seen["thing"]["traceparent"]
    assert context.valid_traceparent(first) and context.valid_traceparent(second)
    assert first != second


def test_binary_cloudevent_headers_name_the_event(app):
    headers = {
        "ce-id": "evt-1",
        "ce-type": "dev.calldownloader.call.received.v1",
        "ce-subject": "call-9",
        "ce-specversion": "1.0",
        "ce-source": "/test",
        "ce-traceparent": TRACEPARENT,
    }
    before = requests("/", "POST", "200")
    assert app.test_client().post("/", headers=headers, data=b"{}").status_code == 200
    seen = app.seen["event"]
    assert seen["event_id"] == "evt-1" and seen["call_id"] == "call-9"
    assert seen["trace_id"] == TRACEPARENT.split("-")[1]
    assert requests("/", "POST", "200") == before + 1


def test_access_log_line_carries_the_trace(app):
    logs.install_record_factory()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger = logging.getLogger("call_downloader.http")
    handler, old = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        app.test_client().get("/api/v1/things/x1", headers={"traceparent": TRACEPARENT})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    (line,) = [r for r in seen if r.name == "call_downloader.http"]
    assert line.getMessage() == "GET /api/v1/things/<call_id> 200"
    assert line.status == 200 and line.levelno == logging.INFO
    assert line.calldl_context["trace_id"] == TRACEPARENT.split("-")[1]
    assert line.calldl_context["call_id"] == "x1"


def test_metrics_route_parses_and_counts_itself(app):
    client = app.test_client()
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    samples = families["calldl_http_requests"].samples
    assert any(
        s.labels == {"function": FN, "route": "/healthz", "method": "GET", "status": "200"}
        for s in samples
    )


def test_install_outside_an_app_context_does_nothing():
    endpoints.install("nothing")  # the dispatcher imports main.py this way


def test_function_name_comes_from_the_main_py_folder(tmp_path):
    folder = tmp_path / "functions" / "my-fn"
    folder.mkdir(parents=True)
    main = folder / "main.py"
    main.write_text("from call_downloader.observability import endpoints\nendpoints.install()\n")
    flask_app = flask.Flask("named")
    with flask_app.app_context():
        code = compile(main.read_text(), str(main), "exec")
        exec(code, {"__file__": str(main), "__name__": "main"})
    assert flask_app.config["CALLDL_INSTRUMENTED"] == "my-fn"
