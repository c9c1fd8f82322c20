"""Helpers shared by the UI tests (a uniquely named module: `conftest` is ambiguous)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from audio_fixtures import make_fixture
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "frontend" / "src" / "i18n" / "locales"
MESSAGES = {lang: json.loads((LOCALES / f"{lang}.json").read_text()) for lang in ("en", "ru")}


def _e2e_helpers() -> Any:
    """tests/e2e/conftest.py (start_server, stop_server, wait_for, SECRET) under a name of its
    own: several conftest modules cannot share the name `conftest`."""
    name = "cd_e2e_server_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "e2e" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


e2e = _e2e_helpers()


def msg(lang: str, key: str, **named: Any) -> str:
    """A message of the UI's own files (frontend/src/i18n/locales), its {placeholders} filled."""
    value: Any = MESSAGES[lang]
    for part in key.split("."):
        value = value[part]
    return re.sub(r"\{(\w+)\}", lambda m: str(named[m.group(1)]), value)


def sign_in(page: Page, url: str, username: str, password: str, lang: str = "en") -> None:
    page.goto(f"{url}/login")
    page.get_by_label(msg(lang, "signIn.username"), exact=True).fill(username)
    page.get_by_label(msg(lang, "signIn.password"), exact=True).fill(password)
    page.get_by_role("button", name=msg(lang, "signIn.submit")).click()
    expect(page.get_by_test_id("whoami")).to_contain_text(username)


def upload_via_api(server: Any, kind: str, external_id: str) -> str:
    """Post a fixture recording as the admin; the new call's id."""
    return server.upload(make_fixture(kind), external_id)
