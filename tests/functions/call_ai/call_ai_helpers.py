"""Helpers of the call-ai tests: a scripted AI service (a real HTTP server on 127.0.0.1),
calls and CloudEvents, and what the database holds about a call (a uniquely named module:
`conftest` is ambiguous)."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "functions" / "calls"))

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # a JSON value; None: the default result
    headers: dict[str, str] = field(default_factory=dict)
    # Runs before the answer is sent, with the request's record (e.g. to post the callback).
    before_answer: Callable[[dict[str, Any]], None] | None = None


class ScriptedAI:
    """The AI service: answers the scripted `Answer`s in order, then a 200 with a result.
    Keeps what each request carried (metadata, callback URL, audio size and media type)."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/analyze"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @Request.application
    def app(self, request: Request) -> Response:
        upload = request.files.get("file")
        with self._lock:
            seen = {
                "metadata": json.loads(request.form.get("metadata") or "{}"),
                "callback_url": request.headers.get("X-Callback-Url"),
                "audio_bytes": len(upload.read()) if upload is not None else None,
                "file_type": upload.content_type if upload is not None else None,
            }
            self.requests.append(seen)
            answer = self.script.pop(0) if self.script else Answer()
        if answer.before_answer is not None:
            answer.before_answer(seen)
        body = answer.body
        if body is None and answer.status == 200:
            body = {"transcript": f"answer {len(self.requests)}"}
        text = "" if body is None else json.dumps(body)
        return Response(text, answer.status, headers=answer.headers, mimetype="application/json")

    def callback_token(self, index: int = -1) -> str:
        return token_of(self.requests[index])


def token_of(request: dict[str, Any]) -> str:
    """The callback token in the X-Callback-Url of a request the AI received."""
    return parse_qs(urlsplit(request["callback_url"]).query)["token"][0]


def make_analyzed_call(status: str = "analyzed") -> uuid.UUID:
    from calls_helpers import make_call, make_user

    return make_call(
        make_user(f"src-{uuid.uuid4().hex[:8]}", "source"),
        status=status,
        reached="analyzed",
        external_id="ext-1",
        metadata={"agent": "alice"},
    )


def analyzed_event(call_id: uuid.UUID, *, run: int = 1, event_id: str | None = None) -> Any:
    from cloudevents.http import CloudEvent

    from call_downloader.events import types as ev

    return CloudEvent(
        {
            "id": event_id or str(uuid.uuid4()),
            "source": "/test",
            "type": ev.CALL_ANALYZED,
            "subject": str(call_id),
            "traceparent": TRACEPARENT,
        },
        {"call_id": str(call_id), "run": run, "duration_seconds": 12.5},
    )


def event_of(row: Any) -> Any:
    """The CloudEvent the dispatcher would hand over for this outbox row."""
    from call_downloader.events import outbox
    from call_downloader.events import types as ev

    return ev.parse_structured(ev.to_json_bytes(outbox.to_envelope(row)))


@dataclass
class CallState:
    call: Any
    timeline: list[tuple[str, str, dict[str, Any]]]
    outbox: list[Any]
    results: list[Any]
    processed_events: list[str]

    @property
    def events(self) -> list[str]:
        return [event for _stage, event, _detail in self.timeline]

    def outbox_of(self, type_: str) -> list[Any]:
        return [row for row in self.outbox if row.type == type_]


def state(call_id: uuid.UUID) -> CallState:
    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import AiResult, Call, OutboxEvent, ProcessedEvent
    from call_downloader.db.models import TimelineEntry as T

    with unit_of_work() as session:
        found = CallState(
            call=session.get(Call, call_id),
            timeline=[
                (t.stage, t.event, t.detail)
                for t in session.query(T).filter(T.call_id == call_id).order_by(T.at, T.id)
            ],
            outbox=session.query(OutboxEvent)
            .filter(OutboxEvent.subject == str(call_id))
            .order_by(OutboxEvent.created_at)
            .all(),
            results=session.query(AiResult)
            .filter(AiResult.call_id == call_id)
            .order_by(AiResult.version)
            .all(),
            processed_events=[
                p.event_id
                for p in session.query(ProcessedEvent).filter(ProcessedEvent.consumer == "call-ai")
            ],
        )
        session.expunge_all()
        return found


def handled(outcome: str, type_: str) -> float:
    """calldl_events_handled_total of call-ai for this event type and outcome."""
    from prometheus_client import REGISTRY

    from call_downloader.observability.metrics import m

    m()  # the metrics exist once built
    value = REGISTRY.get_sample_value(
        "calldl_events_handled_total",
        {"function": "call-ai", "type": type_, "outcome": outcome},
    )
    return value or 0.0


def counter(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    from call_downloader.observability.metrics import m

    m()
    return REGISTRY.get_sample_value(name, labels) or 0.0
