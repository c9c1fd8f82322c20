"""The calls function served by functions-framework's Flask app, on the real PostgreSQL
(fixture `db`). Users and tokens are made directly (no bcrypt: tokens come from a session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "functions" / "calls" / "main.py"


@pytest.fixture
def client(db) -> Iterator[Any]:
    import functions_framework

    app = functions_framework.create_app(target="calls", source=str(SOURCE))
    yield app.test_client()


@pytest.fixture
def people(db) -> dict[str, Any]:
    """One user of each role (plus a second source) with a bearer header each."""
    from calls_helpers import make_user

    return {
        name: make_user(name, role)
        for name, role in (
            ("admin", "admin"),
            ("oper", "operator"),
            ("viewer", "viewer"),
            ("src", "source"),
            ("src2", "source"),
        )
    }
