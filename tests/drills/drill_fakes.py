"""Misbehaving stand-ins for the systems outside the product, for the fault drills.

They extend tests/fakes.py (FakeAI, Receiver) with faults that a drill switches on and off while
calls flow: the AI answering 500, 429 with Retry-After, too late, trickling, HTML, a huge body
or JSON that PostgreSQL cannot store (NaN, NUL); the destination down (503 or refusing
connections), slow, or redirecting to an internal address. Everything listens on 127.0.0.1;
nothing here connects anywhere else (a redirect only *names* an internal address in its
Location header; the product must never follow it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fakes import FakeAI, Receiver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

AI_FAULTS = ("500", "429", "timeout", "trickle", "html", "huge", "unstorable")
HUGE_BYTES = 21 * 1024 * 1024  # above the AI client's 20 MiB answer limit


@dataclass
class ChaosAI(FakeAI):
    """FakeAI whose answers can be made to misbehave: `faults` maps a fault of AI_FAULTS to the
    share of requests that get it (the rest are answered normally). `async_share` of the good
    answers are given as 202 + a callback posted afterwards (with a few retries)."""

    faults: dict[str, float] = field(default_factory=dict)
    async_share: float = 0.0
    # Must exceed the product's AI_TIMEOUT_SECONDS for "timeout" and "trickle" to time out.
    stall_seconds: float = 4.0
    by_call: Counter = field(default_factory=Counter)
    by_fault: Counter = field(default_factory=Counter)
    callbacks_failed: int = 0

    def _pick(self) -> str | None:
        with self._lock:
            if self.faults and sum(self.by_fault.values()) < 2:
                # The first requests of a misbehaving window always misbehave, so a short
                # drill cannot pass without the AI faults having happened.
                return list(self.faults)[sum(self.by_fault.values()) % len(self.faults)]
            roll = self._rng.random()
        for name, share in self.faults.items():
            if roll < share:
                return name
            roll -= share
        return None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        upload = request.files.get("file")  # read the whole upload before answering
        data = upload.read() if upload is not None else b""
        meta = json.loads(request.form.get("metadata") or "{}")
        call_id = str(meta.get("call_id", "openai"))
        fault = self._pick()
        with self._lock:
            self.by_call[call_id] += 1
            if fault:
                self.by_fault[fault] += 1
        if upload is None:
            return Response('{"error": "no file"}', 400)(environ, start_response)
        if fault == "500":
            return Response("boom", 500)(environ, start_response)
        if fault == "429":
            return Response("slow down", 429, headers={"Retry-After": "1"})(environ, start_response)
        if fault == "html":
            page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(page, 200, mimetype="text/html")(environ, start_response)
        if fault == "timeout":
            time.sleep(self.stall_seconds)
            return Response("{}", 200, mimetype="application/json")(environ, start_response)
        if fault == "trickle":
            return Response(self._trickle(), 200, mimetype="application/json")(
                environ, start_response
            )
        if fault == "unstorable":
            # Valid for Python's json, refused by PostgreSQL's jsonb (NaN, a NUL character).
            body = '{"transcript": "nul\\u0000here", "score": NaN}'
            return Response(body, 200, mimetype="application/json")(environ, start_response)
        if fault == "huge":
            return Response(_huge(), 200, mimetype="application/json")(environ, start_response)
        result = {
            "transcript": f"fake transcript for {call_id}",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with self._lock:
            self.received[call_id].append(result["sha256"])
            self.requests += 1
            asynchronous = self._rng.random() < self.async_share
        callback = request.headers.get("X-Callback-Url")
        if asynchronous and callback:
            threading.Thread(target=self._post_later, args=(callback, result), daemon=True).start()
            return Response("", 202)(environ, start_response)
        return Response(json.dumps(result), 200, mimetype="application/json")(
            environ, start_response
        )

    def _trickle(self) -> Any:
        # A valid JSON object, one byte at a time, slower than the product's whole-answer limit.
        body = b'{"transcript": "trickled"}'
        pause = self.stall_seconds / len(body)
        for i in range(len(body)):
            time.sleep(pause)
            yield body[i : i + 1]

    def _post_later(self, url: str, result: dict[str, Any]) -> None:
        import httpx

        for _ in range(5):
            try:
                response = httpx.post(url, json=result, timeout=10)
                if response.status_code < 500:
                    return  # 200 stored, 409 already answered: either way this post is done
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        with self._lock:
            self.callbacks_failed += 1  # the product re-sends after its callback timeout


def _huge() -> Any:
    chunk = b" " * (1 << 20)
    yield b'{"padding": "'
    for _ in range(HUGE_BYTES // len(chunk)):
        yield chunk
    yield b'"}'


@dataclass
class ChaosReceiver(Receiver):
    """Receiver that records every signed POST per webhook-id and can be set to misbehave.

    mode: "ok"; "down" (503 to everything); "slow" (answers after `slow_seconds`, which may be
    longer than the product's delivery timeout: the product gives up, the receiver still keeps
    it, the retry comes with the same webhook-id); "redirect" (307 to `redirect_to`, an internal
    address the product must not follow). `offline()` / `online()` close and reopen the port.
    """

    mode: str = "ok"
    slow_seconds: float = 2.0
    redirect_to: str = "http://169.254.169.254/latest/meta-data/"
    hits: Counter = field(default_factory=Counter)  # accepted POSTs per webhook-id
    by_webhook: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_mode: Counter = field(default_factory=Counter)
    unsigned: int = 0
    _fixed_port: int | None = None

    def start(self) -> ChaosReceiver:
        self._server = make_server("127.0.0.1", self._fixed_port or 0, self, threaded=True)
        self.port = self._fixed_port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def offline(self) -> None:
        """Stop listening: connections are refused until `online()`."""
        self._server.shutdown()
        self._server.server_close()

    def online(self) -> None:
        for _ in range(50):
            try:
                self.start()
                return
            except OSError:  # the port is still held by the closing socket
                time.sleep(0.2)
        raise RuntimeError(f"could not listen on 127.0.0.1:{self._fixed_port} again")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        mode = self.mode
        with self._lock:
            self.by_mode[mode] += 1
        if mode == "down":
            return Response("down for maintenance", 503)(environ, start_response)
        if mode == "redirect":
            return Response("", 307, headers={"Location": self.redirect_to})(
                environ, start_response
            )
        if mode == "slow":
            time.sleep(self.slow_seconds)
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            with self._lock:
                self.bad_signatures += 1
            return Response("bad signature", 401)(environ, start_response)
        payload = json.loads(body)
        webhook_id = request.headers["webhook-id"]
        with self._lock:
            self.posts += 1
            if self._rng.random() < self.fail_rate:
                self.refused += 1
                return Response("try later", 503)(environ, start_response)
            call = payload.get("call") or {}
            self.deliveries[call.get("id")].add(webhook_id)
            self.payloads[call.get("id")] = payload
            self.hits[webhook_id] += 1
            self.by_webhook.setdefault(
                webhook_id,
                {
                    "call_id": call.get("id"),
                    "external_id": call.get("external_id"),
                    "sha256": call.get("sha256"),
                    "result_sha256": (payload.get("result") or {}).get("sha256"),
                },
            )
        return Response("", 204)(environ, start_response)


@dataclass
class AudioHost:
    """Serves recordings for `audio_url` calls on 127.0.0.1 (allow-listed by the drill)."""

    files: dict[str, bytes] = field(default_factory=dict)
    gets: Counter = field(default_factory=lambda: Counter())
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        with self._lock:
            self.gets[path] += 1
            data = self.files.get(path)
        if data is None:
            return Response("not found", 404)(environ, start_response)
        return Response(data, 200, mimetype="audio/wav")(environ, start_response)

    def start(self) -> AudioHost:
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
