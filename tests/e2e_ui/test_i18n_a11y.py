"""The UI in Russian and in English, and accessible in both, in real headless Chromium against
the `make run` server: a Russian browser (context locale ru-RU, so navigator.languages and
Accept-Language) and an English one see every page in their language with locale formatting;
the language switch works and is remembered; errors the server answers are worded in the
chosen language; axe-core (from frontend/node_modules, WCAG 2.0/2.1/2.2 A and AA rules) finds no
violation on any page in either language; the upload drop zone and the audio player work from
the keyboard alone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_fixtures import make_fixture
from playwright.sync_api import Browser, BrowserContext, Page, expect
from ui_helpers import MESSAGES, e2e, msg, sign_in, upload_via_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
SLOW = 60_000  # ms: a whole pipeline run, on a loaded CI machine
ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
AXE = FRONTEND / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BROWSER_LOCALE = {"ru": "ru-RU", "en": "en-US"}
NARROW = 320  # px: WCAG 1.4.10's reflow width


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _texts(value)
    else:
        yield node


def foreign_sentences(lang: str) -> set[str]:
    """The other language's own sentences (no placeholders, at least two words, not the same in
    both): none of them may show on a page in `lang`."""
    other = "en" if lang == "ru" else "ru"
    mine = set(_texts(MESSAGES[lang]))
    return {
        s
        for s in _texts(MESSAGES[other])
        if "{" not in s and "|" not in s and len(s.split()) >= 2 and s not in mine
    }


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` in frontend/")
    return AXE.read_text()


def open_context(browser: Browser, lang: str, axe_source: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, locale=BROWSER_LOCALE[lang]
    )
    context.set_default_timeout(15_000)
    # axe-core from node_modules, in every page before its own scripts (no CDN).
    context.add_init_script(script=axe_source)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Console errors are problems (a missing translation is reported there), except the
    # browser's own line for each request the server refused, which some steps cause on purpose.
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.problems = problems  # type: ignore[attr-defined]
    return context, page


def axe_violations(page: Page) -> list[str]:
    """What axe-core finds against the WCAG A and AA rules on the page as it is now."""
    found = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {
                runOnly: { type: 'tag', values: tags },
                resultTypes: ['violations'],
            });
            return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} -- ` +
                v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`).join(' | '));
        }""",
        WCAG_TAGS,
    )
    return list(found)


def assert_axe_finds_faults(page: Page) -> None:
    """The scan is live: faults put on the page (a field without a label, faint text) are
    reported. They are removed again, and the page is scanned clean after."""
    page.evaluate(
        """() => {
            const probe = document.createElement('div');
            probe.id = 'axe-probe';
            probe.innerHTML = '<input type="text"><p style="color:#bbb;background:#fff">faint</p>';
            document.body.append(probe);
        }"""
    )
    found = " ".join(axe_violations(page))
    assert "label" in found and "color-contrast" in found, found
    page.evaluate("document.getElementById('axe-probe').remove()")


# What each language looks like: a date (month abbreviated), a size and a count in words.
LOOKS = {
    "ru": {
        "date": re.compile(r"\d{2} [а-я]{3,4}\.? \d{4} г\., \d{2}:\d{2}:\d{2}"),
        "size": re.compile(r"\d+,\d кБ"),
        "calls": "2 звонка",
        "sample_rate": "8\u00a0000 Гц",
    },
    "en": {
        "date": re.compile(r"[A-Z][a-z]{2} \d{2}, \d{4}, \d{2}:\d{2}:\d{2}\s[AP]M"),
        "size": re.compile(r"\d+\.\d kB"),
        "calls": "2 calls",
        "sample_rate": "8,000 Hz",
    },
}


def check_page(page: Page, lang: str, title_key: str) -> None:
    """The page speaks `lang` (title, html lang, no sentence of the other language), and axe
    finds nothing to fault, on a desktop screen and on a 320 px wide one, where the page also
    reflows without scrolling sideways (WCAG 1.4.10; wide tables scroll in their own box)."""
    expect(page).to_have_title(f"{msg(lang, title_key)} · {msg(lang, 'app.name')}")
    assert page.evaluate("document.documentElement.lang") == lang
    text = page.evaluate("document.body.innerText")
    leaked = sorted(s for s in foreign_sentences(lang) if s in text)
    assert leaked == [], f"the {lang} page {page.url} shows: {leaked}"
    desktop = page.viewport_size
    for width in (desktop["width"], NARROW):
        page.set_viewport_size({"width": width, "height": desktop["height"]})
        # two frames: the layout and what observes it (ScrollRegion) have settled
        page.evaluate(
            "() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))"
        )
        violations = axe_violations(page)
        assert violations == [], f"{lang} {page.url} at {width} px:\n" + "\n".join(violations)
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{lang} {page.url} is {overflow} px too wide at {width} px"
    page.set_viewport_size(desktop)
    assert not page.problems, page.problems  # type: ignore[attr-defined]


def test_every_page_in_each_language_with_no_accessibility_violation(
    browser: Browser, make_server, receiver_ui, axe_source: str
) -> None:
    server = make_server(DELIVERY_RETRY_DELAYS="0.1,0.1")
    # A dead letter (the destination refuses), then a delivered call.
    receiver_ui.fail_rate = 1.0
    dead_id = upload_via_api(server, "wav_pcm16_8k", "ZVONOK-1")
    e2e.wait_for(lambda: server.call(dead_id)["status"] == "failed", timeout=60)
    receiver_ui.fail_rate = 0.0
    call_id = upload_via_api(server, "wav_pcm16_8k", "ZVONOK-2")
    e2e.wait_for(lambda: server.call(call_id)["status"] == "delivered", timeout=60)
    r = httpx.post(
        f"{server.url}/api/v1/auth/users",
        json={"username": "pbx", "role": "source"},
        headers=server.headers(),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{server.url}/api/v1/auth/api-keys",
        json={"name": "PBX", "user_id": r.json()["id"]},
        headers=server.headers(),
        timeout=10,
    )
    assert r.status_code == 201, r.text

    for lang in ("ru", "en"):
        look = LOOKS[lang]
        context, page = open_context(browser, lang, axe_source)

        page.goto(f"{server.url}/login")
        expect(page.get_by_label(msg(lang, "signIn.username"), exact=True)).to_be_visible()
        assert_axe_finds_faults(page)
        check_page(page, lang, "titles.login")
        sign_in(page, server.url, *server.admin, lang=lang)

        expect(page.get_by_role("heading", name=msg(lang, "titles.dashboard"))).to_be_visible()
        expect(page.get_by_test_id("tile-received")).to_have_text("2")
        expect(page.locator(".legend")).to_contain_text(msg(lang, "status.delivered"))
        check_page(page, lang, "titles.dashboard")

        page.get_by_role("link", name=msg(lang, "titles.calls"), exact=True).click()
        table = page.get_by_test_id("calls-table")
        expect(table.locator("tbody tr")).to_have_count(2)
        expect(page.get_by_test_id("calls-pager")).to_contain_text(look["calls"])
        row = table.locator("tbody tr", has_text="ZVONOK-2")
        expect(row).to_contain_text(msg(lang, "status.delivered"))
        assert look["date"].search(row.inner_text()), row.inner_text()
        assert look["size"].search(row.inner_text()), row.inner_text()
        check_page(page, lang, "titles.calls")

        row.get_by_role("link", name="ZVONOK-2").click()
        expect(page.get_by_test_id("call-status")).to_have_text(msg(lang, "status.delivered"))
        expect(page.get_by_test_id("attempts")).to_contain_text("HTTP 204")
        expect(page.locator(".facts").first).to_contain_text(look["sample_rate"])
        expect(page.get_by_test_id("audio-player")).to_be_visible()
        check_page(page, lang, "titles.call")

        page.get_by_role("link", name=msg(lang, "titles.upload"), exact=True).click()
        expect(page.get_by_role("heading", name=msg(lang, "upload.heading"))).to_be_visible()
        check_page(page, lang, "titles.upload")

        page.get_by_role("link", name=msg(lang, "titles.deadLetters"), exact=True).click()
        dead = page.get_by_test_id("dead-letters")
        expect(dead.locator("tbody tr")).to_have_count(1)
        expect(dead).to_contain_text("ZVONOK-1")
        check_page(page, lang, "titles.deadLetters")
        # The bulk replay asks first: the question is scanned too.
        page.get_by_role("button", name=re.compile(r"\b1\b")).first.click()
        expect(page.locator(".confirm__ask")).to_be_visible()
        check_page(page, lang, "titles.deadLetters")
        page.get_by_role("button", name=msg(lang, "common.cancel")).click()

        page.get_by_role("link", name=msg(lang, "titles.destinations"), exact=True).click()
        expect(page.locator(".dest")).to_have_count(1)
        expect(page.locator(".dest")).to_contain_text(msg(lang, "destinations.fromConfig"))
        check_page(page, lang, "titles.destinations")

        page.get_by_role("link", name=msg(lang, "titles.users"), exact=True).click()
        expect(page.get_by_test_id("user-pbx")).to_be_visible()
        check_page(page, lang, "titles.users")

        page.get_by_role("link", name=msg(lang, "titles.apiKeys"), exact=True).click()
        expect(page.get_by_test_id("api-keys")).to_contain_text("PBX")
        check_page(page, lang, "titles.apiKeys")

        page.get_by_role("link", name=msg(lang, "titles.audit"), exact=True).click()
        expect(page.get_by_test_id("audit")).to_contain_text("api_key.create")
        assert look["date"].search(page.get_by_test_id("audit").inner_text())
        check_page(page, lang, "titles.audit")
        context.close()


def test_switching_language_is_remembered_and_rewords_errors(
    browser: Browser, make_server, axe_source: str
) -> None:
    server = make_server()
    context, page = open_context(browser, "en", axe_source)
    page.goto(f"{server.url}/login")
    expect(page.get_by_label("Username", exact=True)).to_be_visible()
    # A refusal from the server, worded by its code; it follows a switch of language.
    page.get_by_label("Username", exact=True).fill(server.admin[0])
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(msg("en", "errors.codes.invalid_credentials"))
    page.get_by_label("Language", exact=True).select_option(label="Русский")
    expect(page.get_by_role("alert")).to_have_text(msg("ru", "errors.codes.invalid_credentials"))
    expect(page).to_have_title("Вход · Call Downloader")
    assert page.evaluate("document.documentElement.lang") == "ru"
    check_page(page, "ru", "titles.login")

    sign_in(page, server.url, *server.admin, lang="ru")
    expect(page.get_by_role("heading", name="Обзор")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Обзор")).to_be_visible()  # remembered
    assert page.evaluate("localStorage.getItem('cd.locale')") == "ru"

    # Back to English from the header, on a page with data: the page rewrites itself.
    page.get_by_role("link", name="Звонки", exact=True).click()
    expect(page.get_by_text("Звонков пока нет.")).to_be_visible()
    page.get_by_label("Язык", exact=True).select_option(label="English")
    expect(page.get_by_role("heading", name="Calls", exact=True)).to_be_visible()
    expect(page.get_by_text("No calls yet.")).to_be_visible()
    expect(page).to_have_title("Calls · Call Downloader")
    check_page(page, "en", "titles.calls")
    context.close()

    # A Russian browser that has chosen English keeps English; a fresh one starts in Russian.
    context, page = open_context(browser, "ru", axe_source)
    page.goto(f"{server.url}/login")
    expect(page.get_by_label("Имя пользователя", exact=True)).to_be_visible()
    page.evaluate("localStorage.setItem('cd.locale', 'en')")
    page.reload()
    expect(page.get_by_label("Username", exact=True)).to_be_visible()
    context.close()


def test_keyboard_upload_player_and_errors_in_russian(
    browser: Browser, make_server, tmp_path: Path, axe_source: str
) -> None:
    server = make_server()
    context, page = open_context(browser, "ru", axe_source)
    page.goto(f"{server.url}/login")
    # Sign in from the keyboard: the name field has the focus, Tab, Enter.
    expect(page.get_by_label("Имя пользователя", exact=True)).to_be_focused()
    page.keyboard.type(server.admin[0])
    page.keyboard.press("Tab")
    page.keyboard.type(server.admin[1])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Обзор")).to_be_visible()

    page.goto(f"{server.url}/upload")
    expect(page.get_by_role("heading", name="Загрузка записей")).to_be_visible()
    # Tab order: external id, metadata, then the drop zone's file picker.
    page.get_by_label(re.compile("^Внешний id")).focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label(re.compile("^Метаданные"))).to_be_focused()
    page.keyboard.press("Tab")
    picker = page.get_by_test_id("file-input")
    expect(picker).to_be_focused()
    # The focus shows on the visible control around the (visually hidden) input.
    outline = picker.evaluate("(el) => getComputedStyle(el.closest('label')).outlineStyle")
    assert outline not in ("", "none"), outline
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a recording\n" * 20)
    mp3 = make_fixture("mp3_cbr")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files([str(mp3), str(bogus)])

    refused = page.get_by_test_id("upload-notes.txt")
    expect(refused).to_contain_text("Отклонён")
    expect(refused.get_by_role("alert")).to_contain_text(
        msg("ru", "errors.codes.unsupported_media_type", detail="").rstrip()
    )
    expect(page.get_by_test_id(f"upload-status-{mp3.name}")).to_have_text("Доставлен", timeout=SLOW)
    expect(page.get_by_role("progressbar", name=f"Загрузка файла {mp3.name}")).to_have_attribute(
        "aria-valuenow", "100"
    )
    check_page(page, "ru", "titles.upload")

    # To the call from the keyboard.
    link = page.get_by_test_id(f"upload-{mp3.name}").get_by_role("link", name="Открыть звонок →")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("call-status")).to_have_text("Доставлен")

    # The player: Tab reaches it, Space plays and pauses, the skip buttons work with Enter.
    player = page.get_by_test_id("audio-player")
    player.evaluate(
        """async (el) => {
            el.muted = true;
            if (el.readyState < 1) {
                await new Promise((ok) => el.addEventListener('loadedmetadata', ok, {once: true}));
            }
        }"""
    )
    page.get_by_role("link", name="← Все звонки").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.dataset?.testid") == "audio-player":
            break
    else:
        pytest.fail("Tab never reached the audio player")
    page.keyboard.press("Space")
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-testid=audio-player]');"
        " return !el.paused && el.currentTime > 0 }"
    )
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('[data-testid=audio-player]').paused")
    page.keyboard.press("Tab")
    forward = page.get_by_role("button", name="+ 10 с")
    for _ in range(10):
        if forward.evaluate("(el) => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(forward).to_be_focused()
    duration = player.evaluate("(el) => el.duration")
    before = player.evaluate("(el) => el.currentTime")
    page.keyboard.press("Enter")
    after = player.evaluate("(el) => el.currentTime")
    assert after == pytest.approx(min(duration, before + 10), abs=0.01)
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="− 10 с")).to_be_focused()
    page.keyboard.press("Enter")
    assert player.evaluate("(el) => el.currentTime") == pytest.approx(max(0, after - 10), abs=0.01)
    check_page(page, "ru", "titles.call")

    # A refusal on the destinations page, worded in Russian by its code.
    page.get_by_role("link", name="Получатели", exact=True).click()
    page.get_by_label("Название", exact=True).fill("metadata")
    page.get_by_label("URL", exact=True).fill("http://169.254.169.254/latest/meta-data/")
    page.get_by_role("button", name="Добавить получателя", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Этот адрес нельзя использовать:")
    check_page(page, "ru", "titles.destinations")
    context.close()
