"""The fake AI service of the AI client tests: a real HTTP server (werkzeug's) on 127.0.0.1,
scripted per path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

Route = Callable[[Request], Any]


@dataclass
class FakeAi:
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def route(self, path: str) -> Callable[[Route], Route]:
        def register(fn: Route) -> Route:
            self.routes[path] = fn
            return fn

        return register

    def url(self, path: str = "/analyze") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def record(self, request: Request) -> dict[str, Any]:
        """Parse a multipart request the way an AI service would and remember it."""
        upload = request.files.get("file")
        entry = {
            "path": request.path,
            "headers": dict(request.headers),
            "form": request.form.to_dict(),
            "file": upload.read() if upload else None,
            "filename": upload.filename if upload else None,
            "file_type": upload.content_type if upload else None,
        }
        self.seen.append(entry)
        return entry

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        route = self.routes.get(request.path)
        response = route(request) if route else Response("not found", status=404)
        return response(environ, start_response)
