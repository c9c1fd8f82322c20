"""Standard Webhooks signing (checked with the `standardwebhooks` library, as receivers do) and
delivery attempts against real destinations on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler

import pytest
from netfixtures import ScriptedServer, fake_resolver, send
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from call_downloader.net.ssrf import Policy
from call_downloader.net.webhooks import generate_secret, post_webhook, sign_headers
from call_downloader.security.secret_rules import check_webhook_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps(
    {"type": "call.processed", "call": {"id": "c1"}, "result": {"text": "hé"}}
).encode()
DEST = Policy.destination()


# --- signing ---------------------------------------------------------------------------------


def test_signature_verifies_with_the_standard_library() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)


def test_explicit_timestamp_is_signed() -> None:
    ts = int(time.time()) - 60
    headers = sign_headers("msg_1", BODY, [SECRET], timestamp=ts)
    assert headers["webhook-timestamp"] == str(ts)
    Webhook(SECRET).verify(BODY, headers)
    # A replayed message with a moved timestamp no longer verifies.
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, "webhook-timestamp": str(ts + 1)})


def test_tampering_is_detected() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"c1", b"c2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_rotation_signs_with_both_secrets() -> None:
    new, old = generate_secret(), SECRET
    headers = sign_headers("msg_rot", BODY, [new, old])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Webhook(new).verify(BODY, headers)  # receivers already on the new secret
    Webhook(old).verify(BODY, headers)  # receivers still on the old one
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_secret_without_prefix_is_the_same_key() -> None:
    headers = sign_headers("m", BODY, [SECRET.removeprefix("whsec_")], timestamp=1_700_000_000)
    assert headers == sign_headers("m", BODY, [SECRET], timestamp=1_700_000_000)


def test_generate_secret() -> None:
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32
    assert check_webhook_secret(a) == a


@pytest.mark.parametrize("secret", ["", "   ", "whsec_", "whsec_not base64!", "whsec_@@@@"])
def test_invalid_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_headers("m", BODY, [secret])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sign_headers("m", BODY, [])
    with pytest.raises(ValueError, match="UTF-8"):
        sign_headers("m", b"\xff\xfe", [SECRET])
    with pytest.raises(ValueError, match="id"):
        sign_headers("", BODY, [SECRET])
    with pytest.raises(ValueError, match="id"):
        sign_headers("a\r\nb", BODY, [SECRET])


# --- delivery attempts -----------------------------------------------------------------------


def post(url: str, *, timeout: float = 10, policy: Policy = DEST, **kw):
    headers = sign_headers("msg_42", BODY, [SECRET])
    return post_webhook(url, BODY, headers, timeout=timeout, policy=policy, **kw)


def test_delivered_and_verified_by_the_receiver(http_server: ScriptedServer) -> None:
    verified = []

    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        request = http_server.requests[-1]
        try:
            verified.append(Webhook(SECRET).verify(request.body, request.headers))
        except WebhookVerificationError:
            send(h, 401, b"bad signature")
            return
        send(h, 204)

    outcome = post(http_server.url("/hook"))
    assert outcome.outcome == "delivered"
    assert (outcome.status_code, outcome.error, outcome.retry_after) == (204, None, None)
    assert outcome.latency_ms >= 0
    assert verified == [json.loads(BODY)]
    request = http_server.requests[0]
    assert request.method == "POST" and request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "msg_42"


def test_pinned_address_and_original_host_header(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"ok")

    calls: list[str] = []
    outcome = post(
        http_server.url("/hook", host="crm.internal"),
        resolver=fake_resolver({"crm.internal": ["127.0.0.1"]}, calls),
    )
    assert outcome.outcome == "delivered" and outcome.excerpt == "ok"
    assert calls == ["crm.internal"]
    assert http_server.requests[0].headers["host"] == f"crm.internal:{http_server.port}"


def test_gone_stops(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 410, b"this endpoint was removed")

    outcome = post(http_server.url("/hook"))
    assert (outcome.outcome, outcome.status_code) == ("gone", 410)
    assert outcome.excerpt == "this endpoint was removed"


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 500, 502, 503])
def test_other_statuses_retry(http_server: ScriptedServer, status: int) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, status, b'{"error": "nope"}')

    outcome = post(http_server.url("/hook"))
    assert (outcome.outcome, outcome.status_code) == ("retry", status)
    assert outcome.error == f"HTTP {status}"
    assert outcome.excerpt == '{"error": "nope"}'


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_retry_and_are_not_followed(http_server: ScriptedServer, status: int) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, status, b"", {"Location": http_server.url("/elsewhere")})

    @http_server.route("/elsewhere")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 200)

    outcome = post(http_server.url("/hook"))
    assert (outcome.outcome, outcome.status_code) == ("retry", status)
    assert "redirect" in (outcome.error or "")
    assert http_server.paths() == ["/hook"]


def test_retry_after_seconds(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 429, b"slow down", {"Retry-After": "120"})

    outcome = post(http_server.url("/hook"))
    assert (outcome.outcome, outcome.retry_after) == ("retry", 120.0)


def test_retry_after_http_date(http_server: ScriptedServer) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)

    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 503, b"", {"Retry-After": format_datetime(when, usegmt=True)})

    outcome = post(http_server.url("/hook"))
    assert outcome.outcome == "retry"
    # Exact date arithmetic is covered in test_net_helpers with an injected clock.
    assert outcome.retry_after is not None and 0 < outcome.retry_after <= 3600


def test_huge_answer_is_not_read(http_server: ScriptedServer) -> None:
    written = {"bytes": 0}

    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        total = 200 * 1024 * 1024
        h.send_response(200)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        block = b"<p>" + b"a" * 65533
        while written["bytes"] < total:
            h.wfile.write(block)
            written["bytes"] += len(block)

    outcome = post(http_server.url("/hook"))
    assert outcome.outcome == "delivered"
    assert len(outcome.excerpt) == 500 and outcome.excerpt.startswith("<p>aaa")
    assert written["bytes"] < 100 * 1024 * 1024


def test_binary_answer_gives_a_safe_excerpt(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        send(h, 500, b"\xff\xfe\x00\x1b[31mred\x07 ok\nline2")

    outcome = post(http_server.url("/hook"))
    assert outcome.outcome == "retry"
    assert "\x00" not in outcome.excerpt and "\x1b" not in outcome.excerpt
    assert "red" in outcome.excerpt and "\nline2" in outcome.excerpt


def test_status_counts_even_if_the_body_trickles(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(100000):
            if http_server.stop.is_set():
                return
            h.wfile.write(b".")
            h.wfile.flush()
            time.sleep(0.02)

    outcome = post(http_server.url("/hook"), timeout=1.0)
    assert (outcome.outcome, outcome.status_code) == ("delivered", 200)


def test_timeout_retries(http_server: ScriptedServer) -> None:
    @http_server.route("/hook")
    def _(h: BaseHTTPRequestHandler) -> None:
        http_server.stop.wait(20)

    outcome = post(http_server.url("/hook"), timeout=0.5)
    assert (outcome.outcome, outcome.status_code) == ("retry", None)
    assert "timed out" in (outcome.error or "")


def test_connection_refused_retries(closed_port: int) -> None:
    outcome = post(f"http://127.0.0.1:{closed_port}/hook")
    assert (outcome.outcome, outcome.status_code) == ("retry", None)
    assert outcome.error == "connection failed"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://metadata.google.internal/hook",
        "http://meta.test/hook",
        "ftp://127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
    ],
)
def test_forbidden_destinations_are_not_contacted(url: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return {"meta.test": ["169.254.169.254"]}[host]

    outcome = post(url, resolver=resolver)
    assert (outcome.outcome, outcome.status_code) == ("retry", None)
    assert (outcome.error or "").startswith("destination refused")
