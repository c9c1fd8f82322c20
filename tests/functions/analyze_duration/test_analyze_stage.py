"""analyze-duration driven directly (`pipeline.analyze.handle`) with real CloudEvents on the
real PostgreSQL (fixture `db`): what it costs per event."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from audio_fixtures import ffmpeg_duration, make_fixture

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))  # calls_helpers


RECORDING = "wav_pcm16_8k"  # 9.304375 s (ffprobe)


def received_call() -> uuid.UUID:
    from calls_helpers import make_call, make_user

    source = make_user(f"src-{uuid.uuid4().hex[:8]}", "source")
    audio = make_fixture(RECORDING).read_bytes()
    return make_call(source, status="received", audio=audio, fmt="wav", duration=None)


def received_event(call_id: uuid.UUID) -> Any:
    from cloudevents.http import CloudEvent

    from call_downloader.events import types as ev

    return CloudEvent(
        {
            "id": str(uuid.uuid4()),
            "source": "/test",
            "type": ev.CALL_RECEIVED,
            "subject": str(call_id),
        },
        {"call_id": str(call_id)},
    )


def status_and_duration(call_id: uuid.UUID) -> tuple[str, float | None]:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Call

    with unit_of_work() as session:
        call = session.get(Call, call_id)
        assert call is not None
        return call.status, call.duration_seconds


def test_a_second_event_runs_the_same_statements_compiled_already(db):
    """Building a statement per event, or running one SQLAlchemy cannot cache (it compiles
    those at every execution), cost as much CPU as running it."""
    from statement_capture import built_anew, statements_of

    from call_downloader.pipeline import analyze

    calls = [received_call(), received_call()]
    first, second = (statements_of(lambda c=c: analyze.handle(received_event(c))) for c in calls)

    assert len(second) >= 3  # the look, the claim and lock, the update, the event
    assert built_anew(first, second) == []
    duration = round(ffmpeg_duration(make_fixture(RECORDING)), 3)
    assert [status_and_duration(c) for c in calls] == [("analyzed", duration)] * 2
