"""EGRESS_ALLOWLIST: with it set, no outbound connection leaves what it lists, and a refusal
makes no connection attempt (nor a DNS query) at all.

Connection attempts are observed by replacing `socket.create_connection` (what httpcore
connects with) by a recorder that refuses: nothing here reaches a public address, whatever
the code under test would do."""

from __future__ import annotations

import json
import socket

import pytest
from pydantic import ValidationError

from call_downloader.ai.client import AiClient
from call_downloader.config import Settings, reset_settings
from call_downloader.net.download import DownloadError, open_download
from call_downloader.net.ssrf import ForbiddenTarget, Policy, check_url, egress_refusal
from call_downloader.net.webhooks import generate_secret, post_webhook, sign_headers

PUBLIC_AUDIO = "http://93.184.216.34/recording.mp3"
PUBLIC_HOOK = "http://8.8.8.8/hooks/calls"
PUBLIC_AI = "http://1.1.1.1/analyze"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection attempted, refused on the spot (never sent anywhere)."""
    attempts: list[tuple[str, int]] = []

    def refuse(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append((str(address[0]), int(address[1])))
        raise ConnectionRefusedError(111, "refused by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def egress(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("EGRESS_ALLOWLIST", raising=False)
    else:
        monkeypatch.setenv("EGRESS_ALLOWLIST", value)
    reset_settings()


def no_resolution(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} was resolved")


def try_everything(tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A download, a webhook and an AI request to public literal addresses: what each says."""
    said: dict[str, str] = {}
    try:
        with open_download(
            PUBLIC_AUDIO, policy=Policy.public_only(), max_bytes=1000, timeout=5
        ) as download:
            said["download"] = f"answered {download.status_code}"
    except DownloadError as exc:
        said["download"] = f"{exc.code}: {exc.message}"
    body = json.dumps({"type": "test"}).encode()
    outcome = post_webhook(
        PUBLIC_HOOK,
        body,
        sign_headers("msg_egress", body, [generate_secret()]),
        timeout=5,
        policy=Policy.destination(),
    )
    said["webhook"] = str(outcome.error)
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    answer = AiClient(PUBLIC_AI, timeout=5).analyze(str(audio), "a.wav", "audio/wav", {})
    said["ai"] = str(answer.reason)
    return said


def test_public_literal_addresses_are_refused_without_a_connection_attempt(
    monkeypatch: pytest.MonkeyPatch, connections: list[tuple[str, int]], tmp_path
) -> None:
    egress(monkeypatch, "127.0.0.0/8")
    said = try_everything(tmp_path)
    assert connections == []
    assert said["download"] == (
        "audio_url_forbidden: audio_url is not allowed: the host is not in EGRESS_ALLOWLIST"
    )
    assert said["webhook"] == "destination refused: the host is not in EGRESS_ALLOWLIST"
    assert said["ai"] == "AI service unreachable (EgressRefused)"


def test_without_the_allowlist_the_same_requests_do_try_to_connect(
    monkeypatch: pytest.MonkeyPatch, connections: list[tuple[str, int]], tmp_path
) -> None:
    # The other side of the test above: these addresses are otherwise allowed, so the refusal
    # there is the allowlist's (the recorder refuses every attempt: nothing is sent).
    egress(monkeypatch, None)
    try_everything(tmp_path)
    assert {host for host, _ in connections} == {"93.184.216.34", "8.8.8.8", "1.1.1.1"}


def test_a_name_not_listed_is_refused_unresolved(monkeypatch: pytest.MonkeyPatch) -> None:
    egress(monkeypatch, "127.0.0.0/8, pbx.corp.example")
    for url in ("http://localhost:8080/", "https://crm.example.com/hook", "http://pbx.corp/"):
        with pytest.raises(ForbiddenTarget, match="EGRESS_ALLOWLIST"):
            check_url(url, policy=Policy.destination(), resolver=no_resolution)


def test_listed_names_and_ranges_pass_and_the_pinned_address_follows_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    egress(monkeypatch, "127.0.0.0/8, pbx.corp.example, *.ai.example")
    target = check_url(
        "http://pbx.corp.example/a.mp3",
        policy=Policy.public_only(["10.0.0.0/8"]),
        resolver=lambda host, port: ["10.1.2.3"],
    )
    assert [str(a) for a in target.addresses] == ["10.1.2.3"]
    # The connection goes to the address the listed name was pinned to, not to any 10.x.
    assert egress_refusal("10.1.2.3", 80, pinned_name="pbx.corp.example") is None
    assert egress_refusal("10.1.2.3", 80) == "the host is not in EGRESS_ALLOWLIST"
    assert egress_refusal("eu.ai.example", 443) is None
    # An entry without a port opens every port (unlike AUDIO_URL_ALLOWLIST's 80 and 443).
    assert egress_refusal("127.0.0.9", 55123) is None
    assert check_url("http://127.0.0.1:9/", policy=Policy.destination()).addresses


def test_an_entry_with_a_port_opens_only_that_port(monkeypatch: pytest.MonkeyPatch) -> None:
    egress(monkeypatch, "ai.corp.example:8443, [fd00::5]:443, 10.0.0.0/8:*")
    assert egress_refusal("ai.corp.example", 8443) is None
    assert egress_refusal("ai.corp.example", 443) == "the host is not in EGRESS_ALLOWLIST"
    assert egress_refusal("fd00::5", 443) is None
    assert egress_refusal("fd00::5", 80) == "the host is not in EGRESS_ALLOWLIST"
    assert egress_refusal("10.9.8.7", 31337) is None
    with pytest.raises(ForbiddenTarget, match="EGRESS_ALLOWLIST"):
        check_url("http://ai.corp.example/", policy=Policy.destination(), resolver=no_resolution)


def test_unset_means_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    egress(monkeypatch, None)
    assert egress_refusal("8.8.8.8", 443) is None
    assert check_url(PUBLIC_HOOK, policy=Policy.destination(), resolver=no_resolution).addresses


def test_allowed_loopback_is_reached(monkeypatch: pytest.MonkeyPatch, http_server) -> None:  # type: ignore[no-untyped-def]
    @http_server.route("/hook")
    def hook(handler) -> None:  # type: ignore[no-untyped-def]
        handler.send_response(204)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    egress(monkeypatch, "127.0.0.0/8")
    body = b"{}"
    outcome = post_webhook(
        http_server.url("/hook"),
        body,
        sign_headers("msg_loop", body, [generate_secret()]),
        timeout=5,
        policy=Policy.destination(),
    )
    assert outcome.outcome == "delivered"
    assert http_server.paths() == ["/hook"]


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "http://x"])
def test_a_bad_entry_stops_the_configuration(entry: str) -> None:
    with pytest.raises(ValidationError, match="EGRESS_ALLOWLIST entry"):
        Settings(egress_allowlist=entry)
