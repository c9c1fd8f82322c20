"""The operator UI in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright,
no `playwright install`) against the `make run` server, with the fake AI and the receiving
destination of tests/e2e. A failing test leaves a screenshot and the server log under
test-artifacts/e2e_ui/."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from ui_helpers import e2e

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
ARTIFACTS = ROOT / "test-artifacts" / "e2e_ui"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The player is started by the test, not by a click.
    "--autoplay-policy=no-user-gesture-required",
]


# Assertions wait as long as actions do (the contexts' default): on a loaded machine a sign-in
# alone (bcrypt) can take several seconds.
expect.set_options(timeout=15_000)


def _ui_is_stale() -> bool:
    index = FRONTEND / "dist" / "index.html"
    if not index.exists():
        return True
    built = index.stat().st_mtime
    sources = [
        FRONTEND / "index.html",
        FRONTEND / "docs" / "index.html",
        FRONTEND / "package-lock.json",
        *FRONTEND.glob("*.js"),  # the build's configuration
        ROOT / "shared" / "call_downloader" / "api" / "openapi.yaml",  # the API client's source
        *FRONTEND.glob("src/**/*"),
    ]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


@pytest.fixture(scope="session")
def built_ui() -> Path:
    """frontend/dist, built when missing or older than its sources (`make test` builds it
    first; this keeps `pytest tests/e2e_ui` honest on its own)."""
    if _ui_is_stale():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to build the UI (frontend/dist is missing or stale)")
        if not (FRONTEND / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
        subprocess.run(["npm", "run", "build"], cwd=FRONTEND, check=True, capture_output=True)
    return FRONTEND / "dist"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make tools` (apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def ui(request: pytest.FixtureRequest, browser: Any, built_ui: Path) -> Iterator[Any]:
    """A fresh browser context and page; on failure a screenshot is kept."""
    # An English browser: the flows here read the English UI (test_i18n_a11y.py reads both).
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_")
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # noqa: BLE001 - the screenshot must not hide the failure
            problems.append(f"screenshot failed: {exc!r}")
        (ARTIFACTS / f"{name}.txt").write_text("\n".join(problems))
    context.close()


def keep_server_log(request: pytest.FixtureRequest, server: Any) -> None:
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{request.node.name}-server.log").write_text(server.log())


@pytest.fixture
def make_server(request, tmp_path, database_url, db, fake_ai_ui, receiver_ui, built_ui):
    """Start the `make run` server (once per test) with extra environment."""
    started = []

    def start(**env: str) -> Any:
        server = e2e.start_server(tmp_path, database_url, fake_ai_ui, receiver_ui, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        keep_server_log(request, server)
        e2e.stop_server(server)


@pytest.fixture
def fake_ai_ui() -> Iterator[Any]:
    from fakes import FakeAI

    ai = FakeAI().start()
    yield ai
    ai.stop()


@pytest.fixture
def receiver_ui() -> Iterator[Any]:
    from fakes import Receiver

    r = Receiver(secret=e2e.SECRET).start()
    yield r
    r.stop()
