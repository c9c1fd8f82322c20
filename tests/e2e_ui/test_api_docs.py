"""The API reference at /docs, in Chromium: linked from the UI, rendering every operation of
the document the server serves, with nothing fetched from anywhere but the server itself."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import Page, expect

pytestmark = __import__("pytest").mark.e2e


def test_the_api_reference_is_linked_and_needs_nothing_from_outside(make_server, ui: Page) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    tokens = httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"username": server.admin[0], "password": server.admin[1]},
        timeout=30,
    ).json()
    elsewhere: list[str] = []
    ui.on(
        "request",
        lambda r: None if r.url.startswith((server.url, "data:")) else elsewhere.append(r.url),
    )
    ui.goto(f"{server.url}/login")
    session = {
        "accessToken": tokens["access_token"],
        "refreshToken": tokens["refresh_token"],
        "username": server.admin[0],
        "role": "admin",
    }
    ui.evaluate("s => localStorage.setItem('cd.session', s)", json.dumps(session))
    ui.goto(f"{server.url}/")
    ui.get_by_test_id("api-docs").click()
    expect(ui).to_have_url(f"{server.url}/docs")
    document = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
    operations = sum(
        1
        for section in ("paths", "webhooks")
        for item in document[section].values()
        for method in item
        if method != "parameters"
    )
    expect(ui.locator(".opblock")).to_have_count(operations)
    expect(ui.get_by_text("/api/v1/calls/{call_id}/audio-link")).to_be_visible()
    assert elsewhere == []
    assert ui.problems == []  # type: ignore[attr-defined]
