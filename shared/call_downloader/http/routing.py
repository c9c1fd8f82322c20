"""A small router for HTTP functions.

functions-framework hands every path of a function to one target; each function declares its
routes here, and gets the API's JSON errors, `/healthz` and `/readyz` for free.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from call_downloader.config import ConfigurationError
from call_downloader.http.errors import ApiError, api_error_response, error_response
from call_downloader.observability.context import bind
from call_downloader.observability.endpoints import set_route

log = logging.getLogger(__name__)

View = Callable[..., Any]


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self._map = Map(strict_slashes=False, merge_slashes=False)
        self._views: dict[str, View] = {}
        # (rule, methods) as declared: what the API description must list (tests compare).
        self.declared: list[tuple[str, tuple[str, ...]]] = []
        self._served_elsewhere: dict[str, frozenset[str]] = {}
        self.route("/healthz", methods=["GET"])(_healthz)
        self.route("/readyz", methods=["GET"])(_readyz)

    def route(self, rule: str, methods: list[str]) -> Callable[[View], View]:
        def register(view: View) -> View:
            endpoint = f"{view.__module__}.{view.__qualname__}:{rule}"
            self._map.add(Rule(rule, endpoint=endpoint, methods=methods))
            self._views[endpoint] = view
            self.declared.append((rule, tuple(methods)))
            return view

        return register

    def also_served(self, path: str, methods: list[str]) -> None:
        """`methods` of `path` are another function's (the gateway sends them there): a 405
        here names them in `Allow` too."""
        self._served_elsewhere[path] = frozenset(methods)

    def __call__(self, request: flask.Request) -> Any:
        response = flask.make_response(self._dispatch(request))
        _discard_unread_body(request, response)
        return response

    def _dispatch(self, request: flask.Request) -> Any:
        adapter = self._map.bind_to_environ(request.environ)
        set_route(None)  # "unmatched" unless a rule matches
        try:
            rule, args = adapter.match(return_rule=True)
            endpoint = rule.endpoint
            set_route(rule.rule)  # metrics label: the rule, never the raw path
            bind(call_id=args.get("call_id"))
        except NotFound:
            return error_response(404, "not_found", "no such endpoint")
        except MethodNotAllowed as exc:
            elsewhere = self._served_elsewhere.get(request.path.rstrip("/") or "/", frozenset())
            allowed = ", ".join(sorted({*(exc.valid_methods or []), *elsewhere}))
            return error_response(
                405, "method_not_allowed", "method not allowed", {"Allow": allowed}
            )
        try:
            return self._views[endpoint](request, **args)
        except ApiError as exc:
            return api_error_response(exc)
        except HTTPException as exc:  # e.g. werkzeug's RequestEntityTooLarge
            code = (exc.name or "error").lower().replace(" ", "_")
            return error_response(exc.code or 500, code, exc.description or "error")
        except ConfigurationError as exc:
            log.error("%s: configuration refused: %s", self.name, exc)
            return error_response(503, "not_configured", "the service is not configured correctly")
        except Exception as exc:
            if _is_unavailable(exc):
                # A dependency restarting is not a bug: ask the client to come back.
                log.warning("%s: a dependency is unavailable: %r", self.name, exc)
                return error_response(
                    503,
                    "service_unavailable",
                    "temporarily unavailable; retry shortly",
                    {"Retry-After": "5"},
                )
            log.exception("unhandled error in %s", self.name)
            return error_response(500, "internal_error", "internal error")


def _is_unavailable(exc: BaseException) -> bool:
    """PostgreSQL (or RabbitMQ) not answering, as opposed to a fault of this code."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return type(exc).__module__.startswith("pika.exceptions")


DRAIN_LIMIT = 1 << 20


def _discard_unread_body(request: flask.Request, response: flask.Response) -> None:
    """Never buffer what the view did not read (a refused 1 GB upload, say).

    functions-framework reads the whole remaining body into memory after every response
    (`read_request`, to avoid resets on early answers). Read at most DRAIN_LIMIT more here,
    in chunks; past that, mark the body as read and close the connection instead.
    """
    stream = request.stream
    try:
        for _ in range(DRAIN_LIMIT // 65536):
            if not stream.read(65536):
                return
    except Exception:  # the client went away: nothing left to protect
        pass
    request._cached_data = b""  # what functions-framework's read_request would read
    response.headers["Connection"] = "close"


def _healthz(request: flask.Request) -> Any:
    return {"status": "ok"}


def _readyz(request: flask.Request) -> Any:
    from call_downloader.observability.endpoints import readiness_answer

    body, status = readiness_answer(request)
    return flask.make_response(body, status)
