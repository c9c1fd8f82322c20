"""analyze-duration: measure the recording (duration, codec, sample rate, channels, bitrate).

Invalid audio fails the call with reason `invalid_audio` at once (no retry); anything else that
goes wrong (database, storage) raises so the trigger retries.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from cloudevents.http import CloudEvent
from sqlalchemy import bindparam, select

from call_downloader.audio.probe import InvalidAudio, probe_file
from call_downloader.db.engine import lone_read, transaction
from call_downloader.db.models import CallStatus, utcnow
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.observability import metrics
from call_downloader.observability.instrument import note_skipped, observe_event
from call_downloader.pipeline.common import (
    CALLS,
    call_id_of,
    claim_and_lock,
    claim_event,
    fail_call_row,
    timeline_entry,
    traceparent_of,
    update_call,
)
from call_downloader.storage.audio import spooled_audio
from call_downloader.testing import faults

log = logging.getLogger(__name__)
CONSUMER = "analyze-duration"


@cache
def _status_query() -> Any:
    return select(CALLS.c.status, CALLS.c.format).where(CALLS.c.id == bindparam("call_id_"))


@observe_event(CONSUMER)
def handle(event: CloudEvent) -> None:
    call_id = call_id_of(event)
    event_id = str(event["id"])
    trace = traceparent_of(event)
    # A look, not a lock (and outside a transaction): the second transaction decides. A
    # redelivered event whose work was committed finds the call measured already (or its
    # claim taken, below).
    call = lone_read(_status_query(), {"call_id_": call_id})
    if call is None or call.status != CallStatus.RECEIVED:
        with transaction() as tx:
            if claim_event(tx, CONSUMER, event_id):
                note_skipped()  # gone or already measured
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

    with transaction() as tx:
        claimed, call = claim_and_lock(
            tx, CONSUMER, event_id, call_id, CALLS.c.status, CALLS.c.received_at, CALLS.c.ai_run
        )
        if not claimed:
            return
        if call is None or call.status != CallStatus.RECEIVED:
            return
        if info is None:
            fail_call_row(tx, call_id, "analyze-duration", "invalid_audio", str(problem))
            return
        analyzed_at = utcnow()
        duration = round(info.duration_seconds, 3)
        update_call(
            tx,
            call_id,
            format=info.format,
            codec=info.codec,
            duration_seconds=duration,
            sample_rate=info.sample_rate,
            channels=info.channels,
            bitrate=info.bitrate,
            status=CallStatus.ANALYZED,
            analyzed_at=analyzed_at,
        )
        metrics.stage_reached(tx, "analyzed", call.received_at, analyzed_at, duration)
        analyzed = timeline_entry(
            call_id,
            "analyze-duration",
            "analyzed",
            duration_seconds=duration,
            codec=info.codec,
            took_ms=round((analyzed_at - started).total_seconds() * 1000, 1),
        )
        outbox.add_event(
            tx,
            ev.CALL_ANALYZED,
            call_id,
            {"call_id": str(call_id), "run": call.ai_run, "duration_seconds": duration},
            traceparent=trace,
            timeline=[analyzed],
        )
