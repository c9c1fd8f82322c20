"""What an operator does, in real headless Chromium against the `make run` server: sign in,
upload recordings and watch them get delivered, play and seek one, repair a failed call,
replay a dead letter, manage a destination, create an API key, sign out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from audio_fixtures import make_fixture
from playwright.sync_api import Page, expect
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from ui_helpers import e2e, sign_in, upload_via_api
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SLOW = 60_000  # ms: a whole pipeline run, on a loaded CI machine


def admin_token(server: Any) -> dict[str, str]:
    return server.headers()


def call_status(server: Any, call_id: str) -> dict[str, Any]:
    return server.call(call_id)


def test_upload_deliver_listen_reload_and_sign_out(ui: Page, make_server, receiver_ui) -> None:
    server = make_server()
    sign_in(ui, server.url, *server.admin)
    expect(ui.get_by_role("heading", name="Dashboard")).to_be_visible()

    ui.get_by_role("link", name="Upload", exact=True).click()
    expect(ui.get_by_role("heading", name="Upload recordings")).to_be_visible()
    mp3, wav = make_fixture("mp3_cbr"), make_fixture("wav_pcm16_8k")
    ui.get_by_test_id("file-input").set_input_files([str(mp3), str(wav)])
    bars = ui.get_by_role("progressbar")
    expect(bars).to_have_count(2)
    expect(bars.first).to_have_attribute("aria-label", f"Upload of {mp3.name}")
    # Each file is followed on the page until the destination has it.
    for path in (mp3, wav):
        expect(ui.get_by_test_id(f"upload-status-{path.name}")).to_have_text(
            "Delivered", timeout=SLOW
        )
    expect(bars.first).to_have_attribute("aria-valuenow", "100")
    assert len(receiver_ui.deliveries) == 2

    # The call page: facts, the AI result, the timeline, the attempts.
    ui.get_by_test_id(f"upload-{mp3.name}").get_by_role("link", name="Open the call").click()
    expect(ui.get_by_test_id("call-status")).to_have_text("Delivered")
    call_id = ui.url.rsplit("/", 1)[1]
    expect(ui.get_by_test_id("result-text")).to_have_text(f"fake transcript for {call_id}")
    expect(ui.get_by_test_id("attempts")).to_contain_text("HTTP 204")
    expect(ui.locator(".timeline__item")).not_to_have_count(0)

    # The recording plays and seeks (the server answers the player's Range requests).
    ranges: list[tuple[int, str]] = []
    ui.on(
        "response",
        lambda r: (
            ranges.append((r.status, r.headers.get("content-range", "")))
            if "/audio?" in r.url
            else None
        ),
    )
    player = ui.get_by_test_id("audio-player")
    state = player.evaluate(
        """async (el) => {
            el.muted = true;
            if (el.readyState < 1) {
                await new Promise((ok, fail) => {
                    el.addEventListener('loadedmetadata', ok, { once: true });
                    const failed = () => fail(new Error('audio error ' + el.error?.code));
                    el.addEventListener('error', failed, { once: true });
                });
            }
            await el.play();
            await new Promise((ok) => el.addEventListener('timeupdate', ok, { once: true }));
            while (el.currentTime === 0) await new Promise((ok) => setTimeout(ok, 50));
            const played = el.currentTime;
            el.pause();
            const target = el.duration / 2;
            await new Promise((ok) => {
                el.addEventListener('seeked', ok, { once: true });
                el.currentTime = target;
            });
            return { duration: el.duration, played, seekedTo: el.currentTime, target };
        }"""
    )
    details = call_status(server, call_id)
    assert state["played"] > 0
    assert state["duration"] == pytest.approx(details["duration_seconds"], abs=0.5)
    assert state["seekedTo"] == pytest.approx(state["target"], abs=0.5)
    # What the browser fetched: partial content, with the recording's real size.
    assert any(status == 206 and f"/{details['size_bytes']}" in cr for status, cr in ranges), ranges
    # The same link serves an explicit Range request.
    src = player.get_attribute("src")
    probe = httpx.get(f"{server.url}{src}", headers={"Range": "bytes=10-19"}, timeout=10)
    assert probe.status_code == 206 and probe.headers["content-type"] == "audio/mpeg"
    assert probe.content == mp3.read_bytes()[10:20]

    # The session survives a reload.
    ui.reload()
    expect(ui.get_by_test_id("call-status")).to_have_text("Delivered")
    expect(ui.get_by_test_id("whoami")).to_contain_text(server.admin[0])

    # The calls table lists both, and the search finds one.
    ui.get_by_role("link", name="Calls", exact=True).click()
    expect(ui.get_by_role("heading", name="Calls", exact=True)).to_be_visible()
    expect(ui.get_by_test_id("calls-table").locator("tbody tr")).to_have_count(2)
    ui.get_by_label("Search", exact=True).fill(wav.stem)
    expect(ui.get_by_test_id("calls-table").locator("tbody tr")).to_have_count(1)
    expect(ui.get_by_test_id("calls-table")).to_contain_text(wav.name)

    ui.get_by_role("button", name="Sign out").click()
    expect(ui.get_by_role("button", name="Sign in")).to_be_visible()
    ui.goto(f"{server.url}/calls")
    expect(ui.get_by_role("button", name="Sign in")).to_be_visible()
    assert "next=" in ui.url
    assert not ui.problems, ui.problems  # type: ignore[attr-defined]


def test_call_source_formats_play_or_offer_the_download(ui: Page, make_server) -> None:
    # A browser recording (WebM, no Duration) and Matroska play; AMR and WMA, which Chromium
    # cannot decode, say so beside the download instead of a player that fails.
    server = make_server()
    kinds = {"webm_opus_browser": "", "mka_vorbis_8k": "", "amr_nb": "AMR-NB",
             "3gp_amr_wb": "AMR-WB", "wma_v2": "WMA"}
    ids = {kind: upload_via_api(server, kind, f"SRC-{kind}") for kind in kinds}
    for call_id in ids.values():
        e2e.wait_for(lambda c=call_id: call_status(server, c)["status"] == "delivered", timeout=90)
    sign_in(ui, server.url, *server.admin)
    for kind, name in kinds.items():
        ui.goto(f"{server.url}/calls/{ids[kind]}")
        expect(ui.get_by_test_id("call-status")).to_have_text("Delivered")
        if not name:
            played = ui.get_by_test_id("audio-player").evaluate(
                """async (el) => {
                    el.muted = true;
                    await el.play();
                    while (el.currentTime === 0) await new Promise((ok) => setTimeout(ok, 50));
                    el.pause();
                    return el.currentTime;
                }"""
            )
            assert played > 0, kind
            expect(ui.get_by_test_id("audio-not-playable")).to_have_count(0)
            continue
        notice = ui.get_by_test_id("audio-not-playable")
        expect(notice).to_contain_text(f"cannot play {name} recordings")
        expect(ui.get_by_test_id("audio-player")).to_have_count(0)
        link = ui.get_by_role("link", name="Download", exact=True)
        href = link.get_attribute("href")
        assert href and "download=1" in href
        # The notice is true: this Chromium refuses the same bytes in an <audio> element.
        code = ui.evaluate(
            """async (src) => {
                const el = new Audio();
                const outcome = new Promise((ok) => {
                    el.addEventListener('error', () => ok(el.error.code), { once: true });
                    el.addEventListener('loadedmetadata', () => ok(0), { once: true });
                });
                el.src = src;
                return outcome;
            }""",
            href.replace("&download=1", ""),
        )
        assert code == 4, (kind, code)  # MEDIA_ERR_SRC_NOT_SUPPORTED
        with ui.expect_download() as download:
            link.click()
        assert download.value.suggested_filename.endswith(
            {"amr_nb": ".amr", "3gp_amr_wb": ".m4a", "wma_v2": ".wma"}[kind])
    assert not ui.problems, ui.problems  # type: ignore[attr-defined]


def test_failed_call_is_found_and_repaired(ui: Page, make_server, fake_ai_ui, browser) -> None:
    server = make_server(AI_RETRY_DELAYS="0.1,0.1")
    fake_ai_ui.fail_rate = 1.0  # the AI answers 500 to everything: the call fails at call-ai
    call_id = upload_via_api(server, "mp3_cbr", "BROKEN-1")
    e2e.wait_for(lambda: call_status(server, call_id)["status"] == "failed", timeout=60)

    # A viewer sees the failure but is offered no repair.
    r = httpx.post(
        f"{server.url}/api/v1/auth/users",
        json={"username": "vera", "role": "viewer", "password": "viewer-password-1"},
        headers=admin_token(server),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    viewer_context = browser.new_context()
    viewer = viewer_context.new_page()
    sign_in(viewer, server.url, "vera", "viewer-password-1")
    viewer.goto(f"{server.url}/calls/{call_id}")
    expect(viewer.get_by_text("Failed at call-ai")).to_be_visible()
    expect(viewer.get_by_role("button", name="Retry from call-ai")).to_have_count(0)
    expect(viewer.get_by_role("link", name="Upload", exact=True)).to_have_count(0)
    expect(viewer.get_by_role("link", name="Users", exact=True)).to_have_count(0)
    viewer_context.close()

    # The operator finds it with the status filter and repairs it once the AI is back.
    sign_in(ui, server.url, *server.admin)
    ui.get_by_role("link", name="Calls", exact=True).click()
    ui.get_by_test_id("tab-failed").click()
    expect(ui).to_have_url(f"{server.url}/calls?status=failed")
    table = ui.get_by_test_id("calls-table")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("call-ai")
    table.get_by_role("link", name="BROKEN-1").click()
    expect(ui.get_by_text("Failed at call-ai")).to_be_visible()

    fake_ai_ui.fail_rate = 0.0
    ui.get_by_role("button", name="Retry from call-ai").click()
    ui.get_by_role("button", name="Retry", exact=True).click()
    expect(ui.get_by_text("Retry started from call-ai")).to_be_visible()
    expect(ui.get_by_test_id("call-status")).to_have_text("Delivered", timeout=SLOW)
    expect(ui.locator(".timeline")).to_contain_text("retry")

    # The repair is in the audit log.
    ui.get_by_role("link", name="Audit log", exact=True).click()
    expect(ui.get_by_test_id("audit")).to_contain_text("call.retry")


class Inbox:
    """A destination that answers 204 and keeps what it got (to check signatures)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/inbox"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((dict(request.headers), request.get_data()))
        return Response("", 204)(environ, start_response)

    def verifies(self, secret: str) -> bool:
        headers, body = self.received[-1]
        try:
            Webhook(secret).verify(body, headers)
            return True
        except WebhookVerificationError:
            return False

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.stop()


def test_dead_letter_replay_and_destination_management(
    ui: Page, make_server, receiver_ui, inbox
) -> None:
    # The added destination listens on loopback, which only the allowlist opens (with its port).
    inbox_host = inbox.url.split("/")[2]
    server = make_server(DELIVERY_RETRY_DELAYS="0.1,0.1", DESTINATION_URL_ALLOWLIST=inbox_host)
    receiver_ui.fail_rate = 1.0  # the destination answers 503: the delivery dies
    call_id = upload_via_api(server, "wav_pcm16_8k", "UNDELIVERED-1")
    e2e.wait_for(lambda: call_status(server, call_id)["status"] == "failed", timeout=60)

    sign_in(ui, server.url, *server.admin)
    expect(ui.get_by_test_id("tile-dead")).to_have_text("1")
    ui.get_by_role("link", name="Dead letters", exact=True).click()
    expect(ui.get_by_role("heading", name="Dead letters", exact=True)).to_be_visible()
    table = ui.get_by_test_id("dead-letters")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("UNDELIVERED-1")
    expect(table).to_contain_text("HTTP 503")

    receiver_ui.fail_rate = 0.0
    ui.get_by_role("button", name="Replay 1 matching").click()
    ui.get_by_role("button", name="Replay all").click()
    expect(ui.get_by_text("1 delivery replayed")).to_be_visible()
    e2e.wait_for(lambda: call_status(server, call_id)["status"] == "delivered", timeout=60)
    assert call_id in receiver_ui.deliveries
    ui.reload()
    expect(ui.get_by_text("No dead letters")).to_be_visible()

    # Destinations: add one, test it, rotate its secret with an overlap, disable it.
    ui.get_by_role("link", name="Destinations", exact=True).click()
    expect(ui.get_by_role("heading", name="Destinations", exact=True)).to_be_visible()
    ui.get_by_label("Name", exact=True).fill("analytics")
    ui.get_by_label("URL", exact=True).fill(inbox.url)
    ui.get_by_role("button", name="Add destination").click()
    first_secret = ui.get_by_test_id("secret-value").inner_text()
    assert first_secret.startswith("whsec_")
    ui.get_by_role("button", name="I have copied it").click()
    card = ui.get_by_test_id("destination-analytics")
    card.get_by_role("button", name="Send test event").click()
    expect(card.get_by_text("Test delivered")).to_be_visible()
    assert inbox.verifies(first_secret)

    card.get_by_label("Overlap").select_option(label="24 hours")
    card.get_by_role("button", name="Rotate secret").click()
    card.get_by_role("button", name="Rotate", exact=True).click()
    second_secret = ui.get_by_test_id("secret-value").inner_text()
    assert second_secret.startswith("whsec_") and second_secret != first_secret
    expect(card).to_contain_text("rotating until")
    card.get_by_role("button", name="Send test event").click()
    expect(card.get_by_text("2 signatures")).to_be_visible()
    assert inbox.verifies(first_secret) and inbox.verifies(second_secret)

    card.get_by_role("button", name="Disable").click()
    card.get_by_role("button", name="Disable").click()
    expect(card).to_contain_text("disabled")

    # A metadata address is refused with a readable reason.
    ui.get_by_label("Name", exact=True).fill("metadata")
    ui.get_by_label("URL", exact=True).fill("http://169.254.169.254/latest/meta-data/")
    ui.get_by_role("button", name="Add destination").click()
    expect(ui.get_by_role("alert")).to_contain_text("not allowed")


def test_api_key_is_shown_once_and_works(ui: Page, make_server) -> None:
    server = make_server()
    ui.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    sign_in(ui, server.url, *server.admin)

    ui.get_by_role("link", name="Users", exact=True).click()
    expect(ui.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    ui.get_by_label("Username", exact=True).fill("pbx")
    ui.get_by_label("Role", exact=True).select_option("source")
    ui.get_by_role("button", name="Add user").click()
    expect(ui.get_by_test_id("user-pbx")).to_be_visible()

    ui.get_by_role("link", name="API keys", exact=True).click()
    expect(ui.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    ui.get_by_label("Name", exact=True).fill("PBX production")
    ui.get_by_label("Account", exact=True).select_option(label="pbx (source)")
    ui.get_by_role("button", name="Create key").click()
    key = ui.get_by_test_id("secret-value").inner_text()
    assert key.startswith("cdk_")
    ui.get_by_role("button", name="Copy", exact=True).click()
    expect(ui.get_by_text("Copied", exact=True)).to_be_visible()
    assert ui.evaluate("navigator.clipboard.readText()") == key

    # The key works for the source application...
    path = make_fixture("mp3_cbr")
    with path.open("rb") as f:
        r = httpx.post(
            f"{server.url}/api/v1/calls",
            headers={"X-API-Key": key},
            files={"file": (path.name, f)},
            timeout=30,
        )
    assert r.status_code == 202, r.text

    # ...and is never shown again.
    ui.get_by_role("button", name="I have copied it").click()
    expect(ui.get_by_test_id("secret-value")).to_have_count(0)
    ui.reload()
    keys = ui.get_by_test_id("api-keys")
    expect(keys).to_contain_text("PBX production")
    expect(keys).not_to_contain_text(key)
    assert key not in ui.content()


def test_an_ended_session_leads_back_to_sign_in(ui: Page, make_server) -> None:
    server = make_server()
    sign_in(ui, server.url, *server.admin)
    expect(ui.get_by_role("heading", name="Dashboard")).to_be_visible()
    stored = ui.evaluate("JSON.parse(localStorage.getItem('cd.session'))")
    # The session ends on the server (as when it expires or is revoked elsewhere).
    r = httpx.post(
        f"{server.url}/api/v1/auth/logout",
        data={"refresh_token": stored["refreshToken"]},
        headers={"Authorization": f"Bearer {stored['accessToken']}"},
        timeout=10,
    )
    assert r.status_code == 204, r.text
    ui.get_by_role("link", name="Calls", exact=True).click()
    expect(ui.get_by_text("Your session has ended")).to_be_visible()
    assert ui.evaluate("localStorage.getItem('cd.session')") is None
    # Signing in again returns to where the user was going.
    ui.get_by_label("Username", exact=True).fill(server.admin[0])
    ui.get_by_label("Password", exact=True).fill(server.admin[1])
    ui.get_by_role("button", name="Sign in").click()
    expect(ui.get_by_role("heading", name="Calls")).to_be_visible()
