"""The one error shape of the API: `{"error": {"code": "...", "message": "..."}}` (SPEC 3)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise anywhere under a request to answer with this status and error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, details: Any = None
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def api_error_response(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)


def install_error_handlers(app: Flask) -> None:
    """Make every error of `app` answer in the API's JSON shape (never an HTML page)."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return api_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")


def json_client_errors(app: Flask) -> None:
    """Make `app`'s own 4xx answers (no route for a path, a method the route does not take)
    JSON in the API's shape instead of Flask's HTML pages. Server errors keep
    functions-framework's handling (its crash header)."""

    def _client_error(exc: HTTPException) -> Response | HTTPException:
        if exc.code is None or exc.code >= 500:
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code, code, exc.description or exc.name or "error")

    app.register_error_handler(HTTPException, _client_error)
