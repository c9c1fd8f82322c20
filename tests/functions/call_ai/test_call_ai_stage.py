"""call-ai's behaviour, one CloudEvent at a time: what reaches the AI, what is stored, which
events and timeline entries follow, and what a duplicate, stale or crashed event does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from call_ai_helpers import (
    TRACEPARENT,
    Answer,
    analyzed_event,
    counter,
    event_of,
    handled,
    make_analyzed_call,
    state,
    token_of,
)

from call_downloader.events import types as ev
from call_downloader.pipeline import ai_callback, call_ai

TRACE_ID = TRACEPARENT.split("-")[1]


def callback(token: str, result: dict[str, Any]) -> tuple[int, str]:
    """What the ingest function does with an AI's callback once its token verified."""
    claims = ai_callback.verify_token(token)
    assert claims is not None
    return call_ai.accept_callback(claims, result)


def ai_entries(call_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    timeline = state(call_id).timeline
    return [(event, detail) for stage, event, detail in timeline if stage == "call-ai"]


def test_result_is_stored_once_with_its_event_and_timeline(ai, analyzed_call):
    ok_before = handled("ok", ev.CALL_ANALYZED)
    results_before = counter("calldl_ai_requests_total", outcome="result")
    latency_before = counter("calldl_call_stage_latency_seconds_count", stage="processed")
    audio_before = counter("calldl_audio_processed_seconds_total", stage="processed")
    event = analyzed_event(analyzed_call)

    call_ai.handle(event)

    [request] = ai.requests
    assert request["metadata"] == {
        "call_id": str(analyzed_call),
        "external_id": "ext-1",
        "duration_seconds": 12.5,
        "format": "mp3",
        "metadata": {"agent": "alice"},
    }
    assert request["audio_bytes"] == 3 + 256 * 8
    assert request["file_type"] == "audio/mpeg"  # the format's media type, as the player gets
    assert "/api/v1/ai/callback?token=" in request["callback_url"]

    s = state(analyzed_call)
    call = s.call
    assert (call.status, call.result_version, call.ai_attempts, call.ai_run) == (
        "processed",
        1,
        1,
        1,
    )
    assert call.ai_callback_jti is None
    assert call.processed_at is not None
    assert (call.error_stage, call.error_reason, call.error_detail) == (None, None, None)
    assert [(r.version, r.result) for r in s.results] == [(1, {"transcript": "answer 1"})]
    entries = ai_entries(analyzed_call)
    assert [e for e, _ in entries] == ["result_stored", "ai_answered"]
    assert entries[0][1] == {"version": 1, "via": "response"}
    assert entries[1][1]["attempt"] == 1 and entries[1][1]["took_ms"] >= 0
    [processed] = s.outbox
    assert processed.type == ev.CALL_PROCESSED
    assert processed.data == {"call_id": str(analyzed_call), "result_version": 1}
    assert processed.traceparent.split("-")[1] == TRACE_ID  # the call's trace continues
    assert s.processed_events == [str(event["id"])]

    assert handled("ok", ev.CALL_ANALYZED) == ok_before + 1
    assert counter("calldl_ai_requests_total", outcome="result") == results_before + 1
    assert (
        counter("calldl_call_stage_latency_seconds_count", stage="processed") == latency_before + 1
    )
    assert counter("calldl_audio_processed_seconds_total", stage="processed") == audio_before + 12.5


def test_a_duplicate_event_does_nothing(ai, analyzed_call):
    event = analyzed_event(analyzed_call)
    call_ai.handle(event)
    first = state(analyzed_call)
    skipped_before = handled("skipped", ev.CALL_ANALYZED)

    call_ai.handle(event)  # the same event id, delivered again

    assert len(ai.requests) == 1
    again = state(analyzed_call)
    assert again.timeline == first.timeline
    assert [r.id for r in again.outbox] == [r.id for r in first.outbox]
    assert [r.id for r in again.results] == [r.id for r in first.results]
    assert again.call.updated_at == first.call.updated_at
    assert handled("skipped", ev.CALL_ANALYZED) == skipped_before + 1


def test_transient_failures_schedule_retries_then_the_last_attempt_fails(
    ai, analyzed_call, monkeypatch
):
    from call_downloader.config import reset_settings

    monkeypatch.setenv("AI_RETRY_DELAYS", "0.5,0.5")
    reset_settings()
    ai.script = [Answer(503, {"error": "busy"}), Answer(500), Answer(502)]
    retries_before = counter("calldl_ai_retries_total")
    transient_before = counter("calldl_ai_requests_total", outcome="transient")
    failed_before = counter("calldl_calls_failed_total", stage="call-ai", reason="ai_unavailable")

    call_ai.handle(analyzed_event(analyzed_call))

    s = state(analyzed_call)
    assert (s.call.status, s.call.ai_attempts, s.call.ai_callback_jti) == ("processing", 1, None)
    [retry] = s.outbox_of(ev.AI_RETRY)
    assert retry.data == {"call_id": str(analyzed_call), "run": 1, "attempt": 2}
    waited = (retry.available_at - retry.created_at).total_seconds()
    assert 0.5 * 0.8 - 0.01 <= waited <= 0.5 * 1.2 + 0.01  # the configured delay, jittered
    [(event, detail)] = ai_entries(analyzed_call)
    assert event == "ai_retry_scheduled"
    assert detail["attempt"] == 1
    assert detail["reason"].startswith("AI answered HTTP 503")
    assert detail["retry_in_seconds"] == pytest.approx(waited, abs=0.02)
    assert counter("calldl_ai_retries_total") == retries_before + 1

    call_ai.handle(event_of(retry))  # the relay publishes it when due: attempt 2

    s = state(analyzed_call)
    assert s.call.ai_attempts == 2
    second = [r for r in s.outbox_of(ev.AI_RETRY) if r.id != retry.id]
    assert [r.data["attempt"] for r in second] == [3]

    call_ai.handle(event_of(second[0]))  # attempt 3: the schedule is used up

    s = state(analyzed_call)
    assert (s.call.status, s.call.error_stage, s.call.error_reason) == (
        "failed",
        "call-ai",
        "ai_unavailable",
    )
    assert s.call.error_detail.startswith("gave up after 3 attempts: AI answered HTTP 502")
    assert (s.call.ai_attempts, s.call.ai_callback_jti, s.results) == (3, None, [])
    assert len(s.outbox_of(ev.AI_RETRY)) == 2  # no retry after the last attempt
    assert [e for e, _ in ai_entries(analyzed_call)] == [
        "ai_retry_scheduled",
        "ai_retry_scheduled",
        "failed",
    ]
    assert ai_entries(analyzed_call)[-1][1]["reason"] == "ai_unavailable"
    assert len(ai.requests) == 3
    assert counter("calldl_ai_retries_total") == retries_before + 2
    assert counter("calldl_ai_requests_total", outcome="transient") == transient_before + 3
    assert (
        counter("calldl_calls_failed_total", stage="call-ai", reason="ai_unavailable")
        == failed_before + 1
    )


def test_an_unstorable_result_is_asked_again(ai, analyzed_call):
    ai.script = [Answer(200, {"transcript": "nul \u0000 inside"})]

    call_ai.handle(analyzed_event(analyzed_call))

    s = state(analyzed_call)
    assert (s.call.status, s.call.ai_attempts, s.results) == ("processing", 1, [])
    [(event, detail)] = ai_entries(analyzed_call)
    assert event == "ai_retry_scheduled"
    assert detail["reason"].startswith("the AI's result cannot be stored")
    assert [r.data["attempt"] for r in s.outbox_of(ev.AI_RETRY)] == [2]


def test_a_rejection_fails_the_call(ai, analyzed_call):
    ai.script = [Answer(422, {"error": "unsupported audio"})]
    failed_before = counter("calldl_calls_failed_total", stage="call-ai", reason="ai_rejected")

    call_ai.handle(analyzed_event(analyzed_call))

    s = state(analyzed_call)
    assert (s.call.status, s.call.error_stage, s.call.error_reason) == (
        "failed",
        "call-ai",
        "ai_rejected",
    )
    assert "422" in s.call.error_detail and "unsupported audio" in s.call.error_detail
    assert (s.call.ai_attempts, s.call.ai_callback_jti, s.results, s.outbox) == (1, None, [], [])
    [(event, detail)] = ai_entries(analyzed_call)
    assert (event, detail["reason"]) == ("failed", "ai_rejected")
    assert len(ai.requests) == 1
    assert (
        counter("calldl_calls_failed_total", stage="call-ai", reason="ai_rejected")
        == failed_before + 1
    )


def test_accepted_then_the_callback_stores_the_result_once(ai, analyzed_call):
    from call_downloader.pipeline import ai_callback

    during_request: list[Any] = []
    ai.script = [Answer(202, before_answer=lambda _: during_request.append(state(analyzed_call)))]
    event = analyzed_event(analyzed_call)

    call_ai.handle(event)

    token = ai.callback_token()
    s = state(analyzed_call)
    assert (s.call.status, s.call.ai_attempts) == ("processing", 0)  # no retry budget used
    # Recording the 202 leaves the call as the request found it (nothing to change).
    assert s.call.updated_at == during_request[0].call.updated_at
    assert s.call.ai_callback_jti == ai_callback.verify_token(token).jti
    [timeout] = s.outbox_of(ev.AI_RETRY)  # re-sends the recording if no callback comes
    assert timeout.data == {"call_id": str(analyzed_call), "run": 1, "attempt": 1}
    waited = (timeout.available_at - timeout.created_at).total_seconds()
    assert waited == pytest.approx(3600.0, abs=1)
    [(entry, detail)] = ai_entries(analyzed_call)
    assert (entry, detail["attempt"]) == ("ai_accepted", 1)

    call_ai.handle(event)  # redelivered after its work was committed: the AI is not asked again
    assert len(ai.requests) == 1
    assert state(analyzed_call).call.updated_at == s.call.updated_at

    assert callback(token, {"transcript": "later"}) == (200, "result stored")

    s = state(analyzed_call)
    assert (s.call.status, s.call.result_version, s.call.ai_callback_jti) == ("processed", 1, None)
    assert s.call.processed_at is not None
    assert [(r.version, r.result) for r in s.results] == [(1, {"transcript": "later"})]
    assert [e for e, _ in ai_entries(analyzed_call)] == [
        "ai_accepted",
        "result_stored",
        "ai_callback_received",
    ]
    assert ai_entries(analyzed_call)[1][1] == {"version": 1, "via": "callback"}
    [processed] = s.outbox_of(ev.CALL_PROCESSED)
    assert processed.data == {"call_id": str(analyzed_call), "result_version": 1}
    assert processed.traceparent.split("-")[1] == TRACE_ID

    status, _message = callback(token, {"transcript": "again"})
    assert status == 409
    assert len(state(analyzed_call).results) == 1

    call_ai.handle(event_of(timeout))  # the callback timeout, published later: nothing to do
    assert len(ai.requests) == 1
    assert len(state(analyzed_call).results) == 1


def test_a_callback_that_never_came_is_asked_again_with_a_new_token(ai, analyzed_call):
    ai.script = [Answer(202)]
    call_ai.handle(analyzed_event(analyzed_call))
    old_token = ai.callback_token()
    [timeout] = state(analyzed_call).outbox_of(ev.AI_RETRY)

    call_ai.handle(event_of(timeout))  # the callback did not come in time

    assert len(ai.requests) == 2
    assert ai.callback_token() != old_token
    s = state(analyzed_call)
    assert (s.call.status, s.call.result_version, s.call.ai_attempts) == ("processed", 1, 1)
    assert [e for e, _ in ai_entries(analyzed_call)] == [
        "ai_accepted",
        "callback_timeout",
        "result_stored",
        "ai_answered",
    ]
    assert callback(old_token, {"transcript": "late"})[0] == 409


def test_a_callback_during_the_request_wins_and_the_answer_is_dropped(ai, analyzed_call):
    """The AI posts its result to the callback URL, then also answers 200: stored once."""
    callbacks: list[tuple[int, str]] = []
    ai.script = [
        Answer(
            200,
            {"transcript": "from the answer"},
            before_answer=lambda seen: callbacks.append(
                callback(token_of(seen), {"transcript": "from the callback"})
            ),
        )
    ]
    event = analyzed_event(analyzed_call)

    call_ai.handle(event)

    assert callbacks == [(200, "result stored")]
    s = state(analyzed_call)
    assert [(r.version, r.result) for r in s.results] == [(1, {"transcript": "from the callback"})]
    assert (s.call.status, s.call.result_version) == ("processed", 1)
    assert s.call.ai_attempts == 0  # the answer's outcome was not applied
    assert [e for e, _ in ai_entries(analyzed_call)] == ["result_stored", "ai_callback_received"]
    assert len(s.outbox_of(ev.CALL_PROCESSED)) == 1
    assert s.processed_events == [str(event["id"])]


@pytest.mark.parametrize(
    ("status", "run"),
    [("failed", 1), ("processed", 1), ("received", 1), ("analyzed", 2)],
    ids=["failed", "processed", "not-analyzed", "other-run"],
)
def test_an_event_for_a_call_that_moved_on_is_skipped(ai, status, run):
    call_id = make_analyzed_call(status)
    before = state(call_id)
    skipped_before = handled("skipped", ev.CALL_ANALYZED)
    event = analyzed_event(call_id, run=run)

    call_ai.handle(event)

    assert ai.requests == []
    after = state(call_id)
    assert (after.call.status, after.call.ai_attempts) == (status, 0)
    assert after.call.updated_at == before.call.updated_at
    assert (after.timeline, after.outbox, after.results) == ([], [], [])
    assert after.processed_events == [str(event["id"])]  # recorded: a redelivery stops sooner
    assert handled("skipped", ev.CALL_ANALYZED) == skipped_before + 1


def test_a_stale_retry_is_skipped(ai, analyzed_call):
    ai.script = [Answer(503), Answer(503)]
    call_ai.handle(analyzed_event(analyzed_call))
    [first_retry] = state(analyzed_call).outbox_of(ev.AI_RETRY)
    call_ai.handle(event_of(first_retry))  # attempt 2 fails: attempt 3 is the one expected
    skipped_before = handled("skipped", ev.AI_RETRY)

    copy = event_of(first_retry)
    copy["id"] = str(uuid.uuid4())  # another copy of the attempt-2 retry
    call_ai.handle(copy)

    assert len(ai.requests) == 2
    assert state(analyzed_call).call.ai_attempts == 2
    assert handled("skipped", ev.AI_RETRY) == skipped_before + 1


def test_an_event_for_a_missing_call_is_skipped(ai):
    event = analyzed_event(uuid.uuid4())
    skipped_before = handled("skipped", ev.CALL_ANALYZED)

    call_ai.handle(event)

    assert ai.requests == []
    assert handled("skipped", ev.CALL_ANALYZED) == skipped_before + 1


def test_a_crash_between_the_answer_and_the_store_asks_again(ai, analyzed_call, monkeypatch):
    from call_downloader.testing import faults

    real_point = faults.point

    def crash_here(name: str) -> None:
        if name == "call_ai.after_answer_before_store":
            raise RuntimeError("crashed")
        real_point(name)

    monkeypatch.setattr(faults, "point", crash_here)
    event = analyzed_event(analyzed_call)
    with pytest.raises(RuntimeError):
        call_ai.handle(event)

    s = state(analyzed_call)
    assert (s.call.status, s.call.ai_attempts, s.results, s.processed_events) == (
        "processing",
        0,
        [],
        [],
    )
    assert s.call.ai_callback_jti is not None  # the attempt's callback stays valid meanwhile

    monkeypatch.undo()
    call_ai.handle(event)  # the trigger retries the same event

    assert len(ai.requests) == 2
    s = state(analyzed_call)
    assert (s.call.status, s.call.result_version, s.call.ai_attempts) == ("processed", 1, 1)
    assert len(s.results) == 1 and len(s.outbox_of(ev.CALL_PROCESSED)) == 1


def test_without_an_ai_url_the_attempt_is_retried_later(db, analyzed_call):
    call_ai.handle(analyzed_event(analyzed_call))

    s = state(analyzed_call)
    assert (s.call.status, s.call.ai_attempts) == ("processing", 1)
    [(event, detail)] = ai_entries(analyzed_call)
    assert (event, detail["reason"]) == ("ai_retry_scheduled", "AI_URL is not configured")
    assert [r.data["attempt"] for r in s.outbox_of(ev.AI_RETRY)] == [2]


def test_statements_are_built_once_not_per_event(ai):
    """Building a statement (and its cache key) per event cost as much CPU as running it: the
    second event runs the very statement objects the first one did."""
    from statement_capture import built_anew, statements_of

    calls = [make_analyzed_call(), make_analyzed_call()]
    first, second = (statements_of(lambda c=c: call_ai.handle(analyzed_event(c))) for c in calls)

    assert len(second) >= 8  # the lock and check, the store, the outbox insert ...
    assert built_anew(first, second) == []
    assert [state(c).call.status for c in calls] == ["processed", "processed"]
