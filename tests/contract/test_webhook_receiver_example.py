"""The receiver example of docs/api.md (docs/examples/webhook_receiver.py) does what the docs
say, against webhooks signed the way `deliver` signs them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from call_downloader.net.webhooks import generate_secret, sign_headers

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhook_receiver.py"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    secret = generate_secret()
    monkeypatch.setenv("CALL_DOWNLOADER_SECRET", secret)
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module, secret
    sys.modules.pop("webhook_receiver_example", None)


def post(module, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return module.app.test_client().post(
        "/hooks/calls", data=body, headers={**headers, "Content-Type": "application/json"}
    )


def test_it_verifies_and_handles_each_delivery_once(receiver, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    module, secret = receiver
    handled: list[str] = []
    monkeypatch.setattr(module, "handle", lambda payload: handled.append(payload["call"]["id"]))
    body = json.dumps(
        {"type": "call.processed", "call": {"id": "c-1", "external_id": "x"}, "result": {}}
    ).encode()
    headers = sign_headers("msg_1", body, [secret])
    assert post(module, body, headers).status_code == 204
    # A retry of the same delivery (same webhook-id, signed again later) is not handled twice.
    assert post(module, body, sign_headers("msg_1", body, [secret])).status_code == 204
    assert handled == ["c-1"]
    # Signed with another secret, or tampered with: refused.
    assert post(module, body, sign_headers("msg_2", body, [generate_secret()])).status_code == 401
    assert post(module, body.replace(b"c-1", b"c-2"), headers).status_code == 401
    assert handled == ["c-1"]
