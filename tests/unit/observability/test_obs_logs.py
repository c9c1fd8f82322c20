"""Structured logs: one JSON object per line, the scope's ids on every record, and nothing
secret (passwords, tokens, keys, signatures, URL credentials, audio bytes) ever written."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from call_downloader.observability import context, logs

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def capture():
    """A logger writing through the product's formatter into a buffer, as configure() does."""
    logs.install_record_factory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    # A logger outside the logging tree: pytest's capture handlers do not attach to it.
    logger = logging.Logger("test.obs.logs", logging.DEBUG)
    logger.addHandler(handler)

    def lines() -> list[dict]:
        text = stream.getvalue()
        out = []
        for raw in text.splitlines():
            out.append(json.loads(raw))  # every line is one complete JSON object
        return out

    yield logger, lines, stream


def test_one_json_object_per_line_even_for_multiline_messages(capture):
    logger, lines, stream = capture
    logger.info("first\nsecond line\nthird")
    logger.warning("another")
    assert stream.getvalue().count("\n") == 2
    first, second = lines()
    assert first["msg"] == "first\nsecond line\nthird"
    assert first["level"] == "info" and second["level"] == "warning"
    assert first["logger"] == "test.obs.logs"
    assert first["ts"].endswith("+00:00")


def test_scope_fields_are_on_every_record_inside_it_and_gone_after(capture):
    logger, lines, _ = capture
    with context.scope(function="deliver", call_id="c-1", event_id="e-1", traceparent=TRACEPARENT):
        logger.info("inside")
        with context.scope(event_id="e-2"):
            logger.info("nested")
        logger.info("back")
    logger.info("outside")
    inside, nested, back, outside = lines()
    assert inside["call_id"] == "c-1" and inside["event_id"] == "e-1"
    assert inside["trace_id"] == TRACE_ID and inside["function"] == "deliver"
    assert "traceparent" not in inside  # the searchable trace_id is enough
    assert nested["event_id"] == "e-2" and nested["call_id"] == "c-1"
    assert back["event_id"] == "e-1"
    assert not {"call_id", "event_id", "trace_id", "function"} & set(outside)


def test_an_explicit_extra_wins_over_the_scope(capture):
    logger, lines, _ = capture
    with context.scope(call_id="from-scope"):
        logger.info("x", extra={"call_id": "explicit"})
    assert lines()[0]["call_id"] == "explicit"


def test_threads_do_not_see_each_others_scope(capture):
    logger, lines, _ = capture
    barrier = threading.Barrier(2)

    def work(call_id: str) -> None:
        with context.scope(call_id=call_id):
            barrier.wait()
            logger.info("working on %s", call_id)
            barrier.wait()

    threads = [threading.Thread(target=work, args=(f"call-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for line in lines():
        assert line["msg"] == f"working on {line['call_id']}"


def test_unknown_extra_fields_are_dropped(capture):
    logger, lines, _ = capture
    logger.info("request", extra={"headers": {"Authorization": "Bearer x"}, "status": 201})
    (line,) = lines()
    assert "headers" not in line
    assert line["status"] == 201


SECRETS = [
    ("login with password=hunter2hunter2 now", "hunter2hunter2"),
    ('{"password": "correct horse battery"}', "correct horse battery"),
    ("GET /api/v1/ai/callback?token=abcdef123456&x=1", "abcdef123456"),
    ("Authorization: Bearer abc.def.ghijkl", "abc.def.ghijkl"),
    (
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw loaded", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "K5oZfzN95Z9UVu1"),
    ("key cdk_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA created", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"),
    ("ai key sk-proj-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ("connect postgresql://calldl:s3cr3tpw@db:5432/calldl", "s3cr3tpw"),
    ("amqp://guest:rabbitpass99@rabbitmq:5672/%2F down", "rabbitpass99"),
    ("{'api_key': 'zzzzzzzzzzzz'}", "zzzzzzzzzzzz"),
    ("client_secret=shhh-very-secret", "shhh-very-secret"),
]


@pytest.mark.parametrize(("message", "secret"), SECRETS)
def test_secrets_never_reach_the_line(capture, message, secret):
    logger, lines, stream = capture
    logger.info(message)
    logger.info("%s", message)  # in an argument too
    assert secret not in stream.getvalue()
    assert all(logs.REDACTED in line["msg"] for line in lines())


def test_configured_secret_values_are_redacted_wherever_they_appear(capture, monkeypatch):
    logger, lines, stream = capture
    monkeypatch.setenv("CALLDL_TEST_TOKEN", "plain-value-no-pattern-7731")
    logs.register_configured_secrets()
    logger.error("the remote said plain-value-no-pattern-7731 is wrong")
    assert "plain-value-no-pattern-7731" not in stream.getvalue()


def test_bytes_arguments_are_never_written(capture):
    logger, lines, stream = capture
    audio = b"ID3\x03\x00" + bytes(range(256)) * 4
    logger.info("got %s", audio)
    logger.info("as repr %r", audio)
    logger.info(audio)
    text = stream.getvalue()
    assert "\\x00\\x01\\x02" not in text and "ID3" not in text
    first, second, third = lines()
    assert first["msg"] == f"got <{len(audio)} bytes>"
    assert third["msg"] == f"<{len(audio)} bytes>"


def test_a_bytes_repr_inside_a_string_is_redacted(capture):
    logger, lines, stream = capture
    logger.warning("bad payload: %s", repr(b"RIFF" + bytes(range(100))))
    assert "RIFF" not in stream.getvalue()
    assert "<bytes redacted>" in lines()[0]["msg"]


def test_exception_text_is_redacted(capture):
    logger, lines, stream = capture
    try:
        raise RuntimeError("cannot reach https://user:topsecretpw@ai.example/analyze?token=zzz999")
    except RuntimeError:
        logger.exception("AI call failed")
    (line,) = lines()
    assert "RuntimeError" in line["exc"]
    assert "topsecretpw" not in stream.getvalue() and "zzz999" not in stream.getvalue()


def test_long_messages_are_truncated(capture):
    logger, lines, _ = capture
    logger.info("x" * (logs.MAX_MESSAGE_CHARS * 3))
    assert len(lines()[0]["msg"]) < logs.MAX_MESSAGE_CHARS + 50


def test_a_broken_format_string_still_gives_a_line(capture):
    logger, lines, _ = capture
    logger.info("%d items", "not a number")
    assert "items" in lines()[0]["msg"]


def test_ordinary_words_are_kept(capture):
    logger, lines, _ = capture
    message = "missing or invalid callback token; the key is rotated; password reset done"
    logger.info(message)
    assert lines()[0]["msg"] == message


def test_configure_installs_one_json_handler_and_keeps_others():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    stream = io.StringIO()
    try:
        logs.configure("DEBUG", stream=stream)
        logs.configure("DEBUG", stream=stream)  # idempotent
        ours = [h for h in root.handlers if isinstance(h, logs._Handler)]
        assert len(ours) == 1 and foreign in root.handlers
        with context.scope(call_id="cfg-call", traceparent=TRACEPARENT):
            logging.getLogger("call_downloader.test").info("configured")
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["call_id"] == "cfg-call" and line["trace_id"] == TRACE_ID
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _scrub_without_prefilter(text: str) -> str:
    for pattern, replacement in logs._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Pieces that make the patterns match, in any case, mixed with ordinary text.
_PIECES = [
    "Bearer ",
    "BASIC ",
    "://",
    "u:p@",
    "whsec_",
    "v1,",
    "cdk_",
    "sk-",
    "eyJ",
    "EYj",
    "b'",
    'b"',
    "\\'",
    "password",
    "PassWd",
    "pwd",
    "Secret",
    "token",
    "api-key",
    "API_KEY",
    "apikey",
    "authorization",
    "signature",
    "jwt",
    "private_key",
    "Credentials",
    "=",
    ": ",
    '"',
    "'",
    ",",
    ".",
    " ",
    "abcdefghijklmnopqrstuvwxyz0123456789",
    "ABCDEFGHIJ+/=_-",
    "x" * 50,
    "call 6f1c2d3e-0000-4000-8000-000000000000 analyzed",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_the_prefilter_never_skips_text_a_pattern_would_change(text):
    assert logs.Redactor().scrub(text) == _scrub_without_prefilter(text)


@pytest.mark.parametrize(("message", "_secret"), SECRETS)
def test_every_known_secret_sample_passes_the_prefilter(message, _secret):
    assert logs._may_hold_secret(message)
