"""The API's description: `openapi.yaml` beside this module (OpenAPI 3.1), the one place where
the routes, bodies, answers, roles, the webhook and the AI protocol are written down.

    GET /api/v1/openapi.json   the document as JSON, for anyone (rendered at /docs)

Read and converted on first use, not at import (cold start), then kept for the process.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import flask

from call_downloader.api import params
from call_downloader.http.routing import Router

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")
ROUTE = "/api/v1/openapi.json"

_lock = threading.Lock()
_cached: tuple[dict[str, Any], bytes] | None = None


def _load() -> tuple[dict[str, Any], bytes]:
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                import yaml

                loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
                document = yaml.load(DOCUMENT_PATH.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
                body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
                _cached = (document, body)
    return _cached


def document() -> dict[str, Any]:
    """The parsed document (shared: do not modify it)."""
    return _load()[0]


def webhook_payload_schema() -> dict[str, Any]:
    """The webhook payload's JSON Schema (2020-12) on its own, for receivers: the document's
    `WebhookPayload` with every schema it refers to under `$defs`."""
    schemas = document()["components"]["schemas"]
    prefix = "#/components/schemas/"
    needed: dict[str, Any] = {}

    def collect(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                name = ref[len(prefix) :]
                if name not in needed:
                    needed[name] = {}
                    needed[name] = collect(schemas[name])
                return {**node, "$ref": f"#/$defs/{name}"}
            return {key: collect(value) for key, value in node.items()}
        if isinstance(node, list):
            return [collect(item) for item in node]
        return node

    root = collect(schemas["WebhookPayload"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **root,
        "$defs": dict(sorted(needed.items())),
    }


def register(router: Router) -> None:
    router.route(ROUTE, methods=["GET"])(serve)


def serve(request: flask.Request) -> flask.Response:
    params.query(request, set())
    response = flask.Response(_load()[1], 200, content_type="application/json")
    response.headers["Cache-Control"] = "no-cache"
    return response


if __name__ == "__main__":  # python -m call_downloader.api.openapi webhook-schema
    import sys

    if sys.argv[1:] != ["webhook-schema"]:
        sys.exit("usage: python -m call_downloader.api.openapi webhook-schema")
    print(json.dumps(webhook_payload_schema(), indent=2, ensure_ascii=False))
