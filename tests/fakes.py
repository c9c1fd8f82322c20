"""Fakes of the systems outside the product, as real HTTP servers on 127.0.0.1:
an AI service and a destination application that verifies Standard Webhooks signatures."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class _Server:
    def start(self) -> _Server:
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class FakeAI(_Server):
    """Answers the default protocol (and the OpenAI-compatible path).

    fail_rate: share of requests answered 500 (transient). mode "sync" answers the result,
    "async" answers 202 and posts the result to X-Callback-Url from a thread.
    """

    fail_rate: float = 0.0
    mode: str = "sync"
    seed: int = 7
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0
    paths: list[str] = field(default_factory=list)
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        upload = request.files.get("file")
        if upload is None:
            return Response('{"error": "no file"}', 400)(environ, start_response)
        data = upload.read()
        meta = json.loads(request.form.get("metadata") or "{}")
        call_id = meta.get("call_id", "openai")
        with self._lock:
            self.requests += 1
            self.paths.append(request.path)
            fail = self._rng.random() < self.fail_rate
            if fail:
                self.failures += 1
            else:
                self.received[call_id].append(hashlib.sha256(data).hexdigest())
        if fail:
            return Response("boom", 500)(environ, start_response)
        result = {
            "transcript": f"fake transcript for {call_id}",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "model": request.form.get("model"),
        }
        if self.mode == "async":
            callback = request.headers["X-Callback-Url"]
            threading.Thread(target=_post_later, args=(callback, result), daemon=True).start()
            return Response("", 202)(environ, start_response)
        return Response(json.dumps(result), 200, mimetype="application/json")(
            environ, start_response
        )


def _post_later(url: str, result: dict[str, Any]) -> None:
    import httpx

    httpx.post(url, json=result, timeout=10)


@dataclass
class Receiver(_Server):
    """The destination application: verifies every webhook, may refuse a share of them."""

    secret: str = ""
    fail_rate: float = 0.0
    seed: int = 11
    deliveries: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0
    posts: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            with self._lock:
                self.bad_signatures += 1
            return Response("bad signature", 401)(environ, start_response)
        payload = json.loads(body)
        if payload.get("type") == "test":  # a destination test (no call attached)
            return Response("", 204)(environ, start_response)
        with self._lock:
            self.posts += 1
            if self._rng.random() < self.fail_rate:
                self.refused += 1
                return Response("try later", 503)(environ, start_response)
            call_id = payload["call"]["id"]
            self.deliveries[call_id].add(request.headers["webhook-id"])
            self.payloads[call_id] = payload
        return Response("", 204)(environ, start_response)
