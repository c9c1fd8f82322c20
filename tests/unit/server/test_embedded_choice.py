"""`make run` picks each backend: configured or answering is used for real, else embedded."""

from __future__ import annotations

import pytest

from call_downloader.server import run


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    names = ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "CACHE", "EVENT_TRANSPORT")
    for name in (*names, "OUTBOX_POLL_SECONDS"):
        # setenv first: monkeypatch then restores the variable's absence too, so what
        # choose_backends() sets does not leak into later tests (their servers inherit it).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    return monkeypatch


def test_nothing_answers_everything_embedded(clean_env, tmp_path):
    clean_env.setattr(run, "_answers", lambda host, port, timeout=1.0: False)
    notes = run.choose_backends()
    import os

    assert os.environ["DATABASE_URL"] == f"sqlite:///{tmp_path / 'call-downloader.db'}"
    assert os.environ["CACHE"] == "none"
    assert os.environ["EVENT_TRANSPORT"] == "database"
    assert len(notes) == 3


def test_answering_services_are_used(clean_env):
    clean_env.setattr(run, "_answers", lambda host, port, timeout=1.0: True)
    assert run.choose_backends() == []
    import os

    assert "DATABASE_URL" not in os.environ and "EVENT_TRANSPORT" not in os.environ


def test_configured_service_is_used_even_if_down(clean_env):
    clean_env.setattr(run, "_answers", lambda host, port, timeout=1.0: port == 6379)
    clean_env.setenv("RABBITMQ_URL", "amqp://guest:guest@rabbit.example:5672/%2F")
    notes = run.choose_backends()
    import os

    assert os.environ["DATABASE_URL"].startswith("sqlite:///")
    assert "CACHE" not in os.environ  # Redis answers
    assert "EVENT_TRANSPORT" not in os.environ  # RabbitMQ is configured
    assert len(notes) == 1
