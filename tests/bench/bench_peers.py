"""The systems outside the product, as fast as they can be: an AI that answers at once and a
destination that records when each call arrived. Both pipelines (the product and the
hand-wired baseline) talk to this same process, so its cost is the same on both sides.

    python tests/bench/bench_peers.py PORT

POST /analyze   drains the upload, answers a small JSON result.
POST /hook      records `call.id` of the JSON body with time.monotonic() (one clock for every
                process of the machine on Linux), answers 204.
GET  /receipts  {call id: arrival time}; POST /reset forgets them.
GET  /wait?id=X&timeout=S  answers once call X has arrived (or 404 after S seconds).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import WSGIRequestHandler, make_server

READ = 256 * 1024
_receipts: dict[str, float] = {}
_lock = threading.Lock()
_arrived = threading.Condition(_lock)


def _drain(environ: dict[str, Any]) -> int:
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    total = 0
    while total < length:
        chunk = stream.read(min(READ, length - total))
        if not chunk:
            break
        total += len(chunk)
    return total


def _answer(start_response: Any, status: str, body: bytes, ctype: str = "application/json"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: Any):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/analyze" and method == "POST":
        size = _drain(environ)
        body = json.dumps({"transcript": "instant", "bytes": size}).encode()
        return _answer(start_response, "200 OK", body)
    if path == "/hook" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        now = time.monotonic()
        try:
            call_id = str(json.loads(raw)["call"]["id"])
        except (ValueError, KeyError, TypeError):
            return _answer(start_response, "400 Bad Request", b'{"error": "no call id"}')
        with _arrived:
            _receipts.setdefault(call_id, now)  # the first arrival counts
            _arrived.notify_all()
        start_response("204 No Content", [])
        return [b""]
    if path == "/receipts":
        with _lock:
            body = json.dumps(_receipts).encode()
        return _answer(start_response, "200 OK", body)
    if path == "/wait":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        call_id = query.get("id", [""])[0]
        timeout = float(query.get("timeout", ["60"])[0])
        with _arrived:
            found = _arrived.wait_for(lambda: call_id in _receipts, timeout)
            at = _receipts.get(call_id)
        if not found:
            return _answer(start_response, "404 Not Found", b'{"error": "not arrived"}')
        return _answer(start_response, "200 OK", json.dumps({"at": at}).encode())
    if path == "/reset" and method == "POST":
        with _lock:
            _receipts.clear()
        return _answer(start_response, "200 OK", b"{}")
    if path == "/healthz":
        return _answer(start_response, "200 OK", b'{"status": "ok"}')
    return _answer(start_response, "404 Not Found", b'{"error": "not found"}')


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per request is noise
        pass


def main() -> None:
    port = int(sys.argv[1])
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    server.serve_forever()


if __name__ == "__main__":
    main()
