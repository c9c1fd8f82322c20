"""analyze-duration: measure the recording (duration, codec, sample rate, channels, bitrate).

Invalid audio fails the call with reason `invalid_audio` at once (no retry); anything else that
goes wrong (database, storage) raises so the trigger retries.
"""

from __future__ import annotations

import logging

from cloudevents.http import CloudEvent

from call_downloader.audio.probe import InvalidAudio, probe_file
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Call, CallStatus, utcnow
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped, observe_event
from call_downloader.pipeline.common import (
    already_processed,
    call_id_of,
    fail_call,
    lock_call,
    mark_processed,
    record,
    traceparent_of,
)
from call_downloader.storage.audio import spooled_audio
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "analyze-duration"


@observe_event(CONSUMER)
def handle(event: CloudEvent) -> None:
    call_id = call_id_of(event)
    event_id = str(event["id"])
    trace = traceparent_of(event)
    with unit_of_work() as session:
        if already_processed(session, CONSUMER, event_id):
            return
        call = session.get(Call, call_id)
        if call is None or call.status != CallStatus.RECEIVED:
            mark_processed(session, CONSUMER, event_id)  # gone or already measured
            note_skipped()
            return
        fmt = call.format

    started = utcnow()
    try:
        with spooled_audio(call_id) as path:
            info = probe_file(path, fmt)
        problem = None
    except InvalidAudio as exc:
        info, problem = None, exc.reason
    faults.point("analyze.after_probe_before_commit")

    with unit_of_work() as session:
        if already_processed(session, CONSUMER, event_id):
            return
        call = lock_call(session, call_id)
        mark_processed(session, CONSUMER, event_id)
        if call is None or call.status != CallStatus.RECEIVED:
            return
        if info is None:
            fail_call(session, call, "analyze-duration", "invalid_audio", str(problem), trace)
            return
        call.format = info.format
        call.codec = info.codec
        call.duration_seconds = round(info.duration_seconds, 3)
        call.sample_rate = info.sample_rate
        call.channels = info.channels
        call.bitrate = info.bitrate
        call.status = CallStatus.ANALYZED
        call.analyzed_at = utcnow()
        metrics.stage_reached(
            session, "analyzed", call.received_at, call.analyzed_at, call.duration_seconds
        )
        record(
            session,
            call.id,
            "analyze-duration",
            "analyzed",
            duration_seconds=call.duration_seconds,
            codec=info.codec,
            took_ms=round((call.analyzed_at - started).total_seconds() * 1000, 1),
        )
        outbox.add_event(
            session,
            ev.CALL_ANALYZED,
            call.id,
            {
                "call_id": str(call.id),
                "run": call.ai_run,
                "duration_seconds": call.duration_seconds,
            },
            traceparent=trace,
        )
