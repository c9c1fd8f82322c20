"""Demo stand-ins for the two outside systems, started by `make run` when AI_URL or
DELIVERY_URL is not set, so a newcomer sees a call go all the way through.

They are clearly labelled DEMO in every answer and log line; they are not the product.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from typing import Any

from werkzeug.wrappers import Request, Response

log = logging.getLogger("call_downloader.demo")


def demo_ai_app(environ: dict[str, Any], start_response: Any) -> Any:
    """DEMO AI: answers a pretend analysis computed from the uploaded bytes."""
    request = Request(environ)
    if request.method != "POST":
        return Response("DEMO AI: POST a multipart `file`", 405)(environ, start_response)
    upload = request.files.get("file")
    if upload is None:
        body = {"error": {"message": "DEMO AI: the `file` part is missing"}}
        return Response(json.dumps(body), 400, mimetype="application/json")(environ, start_response)
    digest, size = hashlib.sha256(), 0
    while chunk := upload.stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    try:
        meta = json.loads(request.form.get("metadata") or "{}")
    except ValueError:
        meta = {}
    result = {
        "provider": "call-downloader DEMO AI (not a real analysis)",
        "transcript": f"[demo transcript of {meta.get('duration_seconds', '?')} s of audio]",
        "summary": "Demo result: configure AI_URL to use a real AI service.",
        "received_bytes": size,
        "received_sha256": digest.hexdigest(),
    }
    log.info("DEMO AI analysed call %s (%d bytes)", meta.get("call_id"), size)
    return Response(json.dumps(result), 200, mimetype="application/json")(environ, start_response)


class DemoDestination:
    """DEMO destination: logs every webhook it receives, verifies its signature."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: deque[dict[str, Any]] = deque(maxlen=200)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        request = Request(environ)
        if request.method == "GET":
            body = json.dumps(list(self.received))
            return Response(body, 200, mimetype="application/json")(environ, start_response)
        payload = request.get_data(cache=False)
        try:
            Webhook(self.secret).verify(payload, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        try:
            call_id = json.loads(payload)["call"]["id"]
        except (ValueError, KeyError, TypeError):
            call_id = None
        entry = {
            "webhook_id": request.headers.get("webhook-id"),
            "call_id": call_id,
            "signature_valid": verified,
        }
        self.received.append(entry)
        log.info(
            "DEMO destination received %s for call %s (signature %s)",
            entry["webhook_id"],
            call_id,
            "valid" if verified else "INVALID",
        )
        status = 204 if verified else 401
        return Response(status=status)(environ, start_response)
