"""call-ai driven directly (`pipeline.call_ai.handle`) with real CloudEvents, on the real
PostgreSQL (fixture `db`), against an AI service that is a real HTTP server on 127.0.0.1 and
answers from a script."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from call_ai_helpers import ScriptedAI, make_analyzed_call


@pytest.fixture
def ai(db, monkeypatch) -> Iterator[ScriptedAI]:
    from call_downloader.config import reset_settings

    server = ScriptedAI()
    monkeypatch.setenv("AI_URL", server.url)
    reset_settings()
    yield server
    server.server.shutdown()


@pytest.fixture
def analyzed_call(db) -> uuid.UUID:
    return make_analyzed_call()
