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
        self.route("/healthz", methods=["GET"])(_healthz)
        self.route("/readyz", methods=["GET"])(_readyz)

    def route(self, rule: str, methods: list[str]) -> Callable[[View], View]:
        def register(view: View) -> View:
            endpoint = f"{view.__module__}.{view.__qualname__}:{rule}"
            self._map.add(Rule(rule, endpoint=endpoint, methods=methods))
            self._views[endpoint] = view
            return view

        return register

    def __call__(self, request: flask.Request) -> Any:
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
            allowed = ", ".join(sorted(exc.valid_methods or []))
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
        except Exception:
            log.exception("unhandled error in %s", self.name)
            return error_response(500, "internal_error", "internal error")


def _healthz(request: flask.Request) -> Any:
    return {"status": "ok"}


def _readyz(request: flask.Request) -> Any:
    from call_downloader.health import is_ready, readiness

    checks = readiness()
    ok = is_ready(checks)
    return flask.make_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )
