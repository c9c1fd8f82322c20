"""A destination receiving Call Downloader's webhooks (docs/api.md): verify the signature with
a Standard Webhooks library, then handle each delivery once, deduplicating on `webhook-id`.

    pip install flask standardwebhooks
    CALL_DOWNLOADER_SECRET=whsec_... flask --app webhook_receiver run --port 9000
"""

import os

from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
# The destination's signing secret (`whsec_...`, shown when it was created or rotated).
# During a rotation each message carries two signatures: either secret verifies it.
webhook = Webhook(os.environ["CALL_DOWNLOADER_SECRET"])
handled: set[str] = set()  # in production: a table with a unique key, written with the effect


def handle(payload: dict) -> None:
    call, result = payload["call"], payload["result"]
    print(f"call {call['id']} ({call['external_id']}): {result}")


@app.post("/hooks/calls")
def receive():
    body = request.get_data()
    try:
        # Checks the signature and that `webhook-timestamp` is within 5 minutes of now.
        payload = webhook.verify(body, dict(request.headers))
    except WebhookVerificationError:
        return "", 401
    message_id = request.headers["webhook-id"]  # the same on every retry of one delivery
    if message_id in handled or payload.get("type") != "call.processed":
        return "", 204  # a retry of what was handled already, or a `test` event
    handle(payload)
    handled.add(message_id)
    return "", 204  # any 2xx ends the retries; 410 Gone stops them for good
