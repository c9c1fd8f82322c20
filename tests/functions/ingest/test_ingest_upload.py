"""POST /api/v1/calls: one transaction per upload, from the bearer token's user lookup to the
`call.received` event; the 202 answer built from what was written (nothing read back); a
recording smaller than one chunk written with one INSERT of its call row, a larger one with
its rows written while the body streams in."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import uuid
from typing import Any

import pytest

CALLS = "/api/v1/calls"
SMALL = 32 * 1024
LARGE = (1 << 20) + 300 * 1024  # two chunks: the first written while the body streams in


def wav(total: int) -> bytes:
    data_len = total - 44
    header = b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    header += b"data" + struct.pack("<I", data_len)
    return header + bytes((i * 37) & 0xFF for i in range(data_len))


def upload(client: Any, headers: dict[str, str], data: bytes, **fields: str) -> Any:
    form: dict[str, Any] = {"file": (io.BytesIO(data), "Rec 1.wav", "audio/x-wav"), **fields}
    return client.post(CALLS, headers=headers, data=form, content_type="multipart/form-data")


def counts() -> dict[str, int]:
    from sqlalchemy import text

    from call_downloader.db.engine import get_engine

    with get_engine().connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
            for table in ("calls", "audio_chunks", "timeline", "outbox")
        }


class StatementLog:
    """The engine's transactions and statements while it is attached."""

    def __init__(self) -> None:
        self.begins = 0
        self.statements: list[str] = []

    def __enter__(self) -> StatementLog:
        from sqlalchemy import event

        from call_downloader.db.engine import get_engine

        self.engine = get_engine()
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._statement)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._statement)

    def _begin(self, conn: Any) -> None:
        self.begins += 1

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(" ".join(statement.split()))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_the_answer_is_the_call_as_stored(clients, source, admin, size):
    audio = wav(size)
    metadata = {"agent": "Zoë", "queue": 7, "tags": ["a", "b"]}
    response = upload(
        clients["ingest"], source.headers, audio, external_id="ext-1", metadata=json.dumps(metadata)
    )
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"{CALLS}/{body['id']}"
    # What the calls API reads from the database is exactly what the upload answered (the
    # API adds the source's name and the list of result versions).
    shown = clients["calls"].get(f"{CALLS}/{body['id']}", headers=admin.headers)
    assert shown.status_code == 200
    shown_body = shown.get_json()
    assert set(shown_body) - set(body) == {"source", "result_versions"}
    assert body == {name: shown_body[name] for name in body}
    assert body["status"] == "received"
    assert body["source_id"] == str(source.id)
    assert body["external_id"] == "ext-1"
    assert body["metadata"] == metadata
    assert body["filename"] == "Rec 1.wav"
    assert body["size_bytes"] == size
    assert body["sha256"] == hashlib.sha256(audio).hexdigest()
    assert body["format"] == "wav"
    assert body["received_at"] <= body["updated_at"]
    assert [(t["stage"], t["event"], t["detail"]) for t in body["timeline"]] == [
        ("ingest", "received", {"size_bytes": size, "format": "wav", "origin": "upload"})
    ]
    assert counts() == {
        "calls": 1,
        "audio_chunks": 1 if size == SMALL else 2,
        "timeline": 1,
        "outbox": 1,
    }
    audio_back = clients["calls"].get(f"{CALLS}/{body['id']}/audio", headers=admin.headers)
    assert audio_back.status_code == 200
    assert audio_back.data == audio


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_an_upload_is_one_transaction_and_reads_nothing_back(clients, source, size):
    audio = wav(size)
    upload(clients["ingest"], source.headers, audio)  # the engine and its caches warm
    with StatementLog() as log:
        response = upload(clients["ingest"], source.headers, audio)
    assert response.status_code == 202
    assert log.begins == 1  # the token's user, the call, its chunks, timeline and event
    assert log.statements[0].startswith("SELECT users.id")
    written = [i for i, s in enumerate(log.statements) if s.startswith("INSERT INTO calls")]
    assert len(written) == 1
    after = log.statements[written[0] + 1 :]
    assert not [s for s in after if s.startswith("SELECT") and "pg_notify" not in s]
    # A recording of one chunk needs no UPDATE of its call row: it is inserted complete.
    updates = [s for s in log.statements if s.startswith("UPDATE calls")]
    assert len(updates) == (0 if size == SMALL else 1)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_a_second_upload_runs_statements_compiled_already(clients, source, size):
    """SQLAlchemy compiles a statement without a cache key at every execution (a multi-row
    VALUES was 12 % of the server's CPU): once warm, an upload compiles nothing."""
    from statement_capture import statements_of

    upload(clients["ingest"], source.headers, wav(size))  # the engine and its caches warm
    executed = statements_of(lambda: upload(clients["ingest"], source.headers, wav(size)))
    assert len(executed) >= 3  # the token's user, the call, the event with its timeline
    assert [str(e.statement) for e in executed if e.compiled_anew] == []


def test_a_keyed_upload_is_one_transaction_too(clients, source):
    headers = {**source.headers, "Idempotency-Key": "key-1"}
    upload(clients["ingest"], source.headers, wav(SMALL))  # the engine and its caches warm
    with StatementLog() as log:
        first = upload(clients["ingest"], headers, wav(SMALL))
    assert first.status_code == 202
    assert log.begins == 1
    again = upload(clients["ingest"], headers, wav(SMALL))
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert counts()["calls"] == 2


def test_a_deactivated_user_or_revoked_session_is_refused_at_once(clients, source):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User
    from call_downloader.security.tokens import revoke_user_sessions

    assert upload(clients["ingest"], source.headers, wav(SMALL)).status_code == 202
    with unit_of_work() as session:
        session.get(User, source.id).active = False
    refused = upload(clients["ingest"], source.headers, wav(SMALL))
    assert refused.status_code == 401
    with unit_of_work() as session:
        session.get(User, source.id).active = True
    assert upload(clients["ingest"], source.headers, wav(SMALL)).status_code == 202
    with unit_of_work() as session:
        revoke_user_sessions(session, source.id)
    revoked = upload(clients["ingest"], source.headers, wav(SMALL))
    assert revoked.status_code == 401
    assert revoked.get_json()["error"]["message"] == "token has been revoked"
    assert counts()["calls"] == 2


def test_a_deleted_user_is_refused_and_a_reader_forbidden(clients, make_person):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User

    viewer = make_person("viewer")
    forbidden = upload(clients["ingest"], viewer.headers, wav(SMALL))
    assert forbidden.status_code == 403
    gone = make_person("source")
    with unit_of_work() as session:
        session.delete(session.get(User, gone.id))
    assert upload(clients["ingest"], gone.headers, wav(SMALL)).status_code == 401
    assert counts() == {"calls": 0, "audio_chunks": 0, "timeline": 0, "outbox": 0}


def test_an_api_key_uploads_as_its_user(clients, source):
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User
    from call_downloader.security.api_keys import create_api_key

    with unit_of_work() as session:
        raw = create_api_key(session, session.get(User, source.id), "uploader").key
    for headers in ({"X-API-Key": raw}, {"Authorization": f"Bearer {raw}"}):
        response = upload(clients["ingest"], headers, wav(SMALL))
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["source_id"] == str(source.id)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_a_refusal_after_the_audio_leaves_nothing(clients, source, size):
    response = upload(clients["ingest"], source.headers, wav(size), metadata="[not json")
    assert response.status_code == 422
    assert counts() == {"calls": 0, "audio_chunks": 0, "timeline": 0, "outbox": 0}


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_the_same_external_id_answers_the_first_call(clients, source, size):
    first = upload(clients["ingest"], source.headers, wav(size), external_id="same")
    assert first.status_code == 202
    before = counts()
    again = upload(clients["ingest"], source.headers, wav(size), external_id="same")
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert counts() == before


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one chunk", "two chunks"])
def test_a_lost_race_answers_the_winner(clients, source, size, monkeypatch):
    """Two uploads with one Idempotency-Key at once: both pass the first look-up; the loser's
    INSERT of its call row fails on the unique key (at the end of a one-chunk body, at its
    first chunk otherwise), and it answers the winner's call."""
    from call_downloader.pipeline import ingest as ingest_stage

    headers = {**source.headers, "Idempotency-Key": "raced"}
    winner = upload(clients["ingest"], headers, wav(size))
    assert winner.status_code == 202
    before = counts()
    real = ingest_stage._existing_id
    looked: list[tuple[Any, ...]] = []

    def blind_first_look(*args: Any) -> uuid.UUID | None:
        looked.append(args[1:])
        return None if len(looked) == 1 else real(*args)

    monkeypatch.setattr(ingest_stage, "_existing_id", blind_first_look)
    loser = upload(clients["ingest"], headers, wav(size))
    assert loser.status_code == 200, loser.get_json()
    assert loser.get_json()["id"] == winner.get_json()["id"]
    assert counts() == before
    assert len(looked) >= 2  # the race was looked up again after the failed INSERT


def test_the_existing_call_answered_to_its_source_has_no_delivery_internals(clients, source):
    """Issue 16, item 6: the 200 of a repeated upload is the source's view of its call."""
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import Delivery, DeliveryAttempt, Destination

    first = upload(clients["ingest"], source.headers, wav(SMALL), external_id="again")
    call_id = uuid.UUID(first.get_json()["id"])
    with unit_of_work() as session:
        dest = Destination(name="crm-internal", url="http://10.0.0.7/hook", secret="whsec_x")
        session.add(dest)
        session.flush()
        session.add(
            Delivery(id="msg_1", call_id=call_id, destination_id=dest.id, result_version=1,
                     status="pending", attempts=1, last_error="HTTP 500")
        )  # fmt: skip
        session.flush()
        session.add(
            DeliveryAttempt(delivery_id="msg_1", number=1, status_code=500,
                            response_excerpt="stack trace from 10.0.0.7", error="HTTP 500")
        )  # fmt: skip
    again = upload(clients["ingest"], source.headers, wav(SMALL), external_id="again")
    assert again.status_code == 200
    body = again.get_json()
    assert body["attempts"] == [] and body["deliveries"] == [
        {"webhook_id": "msg_1", "status": "pending", "delivered_at": None}
    ]
    assert "10.0.0.7" not in json.dumps(body) and "crm-internal" not in json.dumps(body)
