"""The request/event scope and W3C traceparent handling."""

from __future__ import annotations

import pytest

from call_downloader.events import types as ev
from call_downloader.observability import context

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        VALID.upper().replace("00-", "00-", 1),  # hex case does not matter
        "  " + VALID + " ",
    ],
)
def test_valid_traceparents(value):
    assert context.valid_traceparent(value) == VALID


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        42,
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero parent id
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # unknown version
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # 31 hex digits
        "00-<script>alert(1)</script>zzzzzzzzzzzzz-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ],
)
def test_invalid_traceparents_are_refused(value):
    assert context.valid_traceparent(value) is None
    assert context.trace_id_of(value) is None


def test_a_new_traceparent_is_valid_and_keeps_its_trace_across_children():
    tp = context.new_traceparent()
    assert context.valid_traceparent(tp) == tp
    child = ev.child_traceparent(tp)
    assert context.trace_id_of(child) == context.trace_id_of(tp)
    assert child != tp  # a new span


def test_scope_takes_the_trace_id_from_a_valid_traceparent_only():
    with context.scope(traceparent=VALID) as s:
        assert s["trace_id"] == VALID.split("-")[1]
    with context.scope(traceparent="bogus") as s:
        assert "trace_id" not in s and "traceparent" not in s


def test_traceparent_prefers_the_scope_then_a_valid_header():
    other = context.new_traceparent()
    assert context.traceparent(None) is None
    assert context.traceparent("bogus") is None
    assert context.traceparent(other) == other
    with context.scope(traceparent=VALID):
        assert context.traceparent(other) == VALID


def test_bind_outside_a_scope_does_nothing_and_inside_adds():
    context.bind(call_id="x")
    assert context.current() == {}
    with context.scope(function="f"):
        context.bind(call_id="c")
        assert context.get("call_id") == "c"
    assert context.current() == {}


def test_unknown_fields_are_a_programming_error():
    with pytest.raises(TypeError):
        with context.scope(password="x"):
            pass


def test_ids_are_bounded():
    with context.scope(call_id="x" * 10_000) as s:
        assert len(s["call_id"]) == context.MAX_ID_CHARS


def test_in_scope_isolates_binds():
    @context.in_scope
    def work():
        context.bind(event_id="inner")
        return context.get("event_id")

    with context.scope(event_id="outer"):
        assert work() == "inner"
        assert context.get("event_id") == "outer"
