"""ingest: take a recording from a source application (SPEC 3.1).

The call row, its audio chunks and its `call.received` event are written in ONE transaction
while the body streams in (sha256 and size computed on the way, the format decided from the
first bytes; a multipart body read by werkzeug's incremental decoder, held to the grammar ingest
has always accepted: `_MultipartForm`). Any refusal rolls everything back: nothing is
half-written. 202 is answered only after the commit, with the call as written (nothing is read
back). An `audio_url` is downloaded into a temporary file first, with no transaction open, and
then stored the same way. Every byte of a body counts against the upload limit, whatever part
of it carries them.

The hot path, so Core statements on a `db.engine.Transaction` (no ORM session), as few as
possible: the same transaction first reads the bearer token's user, and a recording smaller
than one chunk gets its call row in one INSERT once the body is read (a larger one gets it
before its first chunk, completed by an UPDATE at the end).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import Parser
from email.policy import HTTP
from typing import Any

import flask
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Field, File, MultipartDecoder, NeedData, State

from call_downloader.audio.formats import FORMAT_NAMES, SNIFF_BYTES, sniff_format
from call_downloader.config import get_settings
from call_downloader.db.engine import Transaction, transaction, unit_of_work
from call_downloader.db.models import CallStatus, Role, utcnow
from call_downloader.events import outbox
from call_downloader.events import types as ev
from call_downloader.http.errors import ApiError
from call_downloader.observability import context as obs_context
from call_downloader.observability import metrics
from call_downloader.pipeline.common import CALLS, check_storable, load_json, timeline_entry
from call_downloader.pipeline.views import call_json, created_call_json, for_source
from call_downloader.security.identity import Identity
from call_downloader.storage import audio as audio_store
from call_downloader.testing import faults

log = logging.getLogger(__name__)

READ_BYTES = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024  # external_id and metadata together stay far below this
MAX_ID_CHARS = 255
# Multipart framing and the small fields around the file take little: a body this much above
# the limit is refused, from its Content-Length before reading anything, else as it streams in
# (every part counts, the ones ingest skips too).
MULTIPART_OVERHEAD = 256 * 1024
MAX_PART_HEADER_BYTES = 64 * 1024  # one part's header block (a file name is far below this)
_PRINTABLE_ID = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


# Statements built once: a statement object computes its cache key once.
_INSERT_CALL = insert(CALLS)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the recording exceeds the {limit}-byte limit")


def _not_audio() -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        f"the content is not a supported audio format ({FORMAT_NAMES})",
    )


def _clean_id(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_field", f"{name} must be a string")
    if len(value) > MAX_ID_CHARS or not _PRINTABLE_ID.match(value):
        raise ApiError(
            422, "invalid_field", f"{name} must be 1-{MAX_ID_CHARS} printable ASCII characters"
        )
    return value


def _clean_metadata(value: Any) -> dict[str, Any]:
    if value is None or value in ("", b""):
        return {}
    if isinstance(value, (str, bytes)):
        try:
            value = load_json(value)
        except ValueError as exc:
            reason = f"metadata must be a JSON object: {exc}"
            raise ApiError(422, "invalid_metadata", reason) from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    try:
        check_storable(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_metadata", f"metadata cannot be stored: {exc}") from None
    if len(json.dumps(value)) > MAX_FIELD_BYTES:
        raise ApiError(413, "metadata_too_large", f"metadata exceeds {MAX_FIELD_BYTES} bytes")
    return value


def _clean_filename(name: str | None) -> str | None:
    """Keep a display name only: no directories, no control characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    return name[:255] or None


class NewCall:
    """The call being created, and its row's values. The row is inserted just before the
    first audio chunk (ingest's chunk writer calls `insert_row`): during the body for a
    recording of more than one chunk (completed by an UPDATE at the end), at the end for a
    smaller one, then complete in one INSERT."""

    def __init__(self, tx: Transaction, req: IngestRequest) -> None:
        self.tx = tx
        self.id = uuid.uuid4()
        now = utcnow()
        self.values: dict[str, Any] = {
            "id": self.id,
            "source_id": req.identity.user_id,
            "idempotency_key": req.idempotency_key,
            "status": CallStatus.RECEIVED,
            "origin": req.origin,
            "audio_url": req.audio_url,
            "metadata": {},
            "received_at": now,
            "updated_at": now,
        }
        self.inserted = False
        obs_context.bind(call_id=self.id)  # the request's log lines name the call from here on

    def insert_row(self) -> None:
        self.tx.execute(_INSERT_CALL, self.values)
        self.inserted = True


class FormatSniffer:
    """Decides the format from the first SNIFF_BYTES of a recording as they arrive: 415 as
    soon as they are known not to be audio."""

    def __init__(self) -> None:
        self.format: str | None = None
        self._head = bytearray()

    def feed(self, data: bytes) -> None:
        if self.format is None:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self.finish()

    def finish(self) -> str:
        """The format of a recording that ended (it may be shorter than SNIFF_BYTES)."""
        if self.format is None:
            fmt = sniff_format(bytes(self._head))
            if fmt is None:
                raise _not_audio()
            self.format = fmt
        return self.format


@dataclass
class AudioSink:
    """Streams audio into the call's chunks, hashing, counting, sniffing and caching."""

    tx: Transaction
    call: NewCall
    limit: int
    size: int = 0
    _sha: Any = field(default_factory=hashlib.sha256)
    _sniffer: FormatSniffer = field(default_factory=FormatSniffer)
    _cache: bytearray | None = field(default_factory=bytearray)
    _writer: audio_store.ChunkWriter | None = None

    def __post_init__(self) -> None:
        self._writer = audio_store.ChunkWriter(
            self.tx, self.call.id, before_first_row=self.call.insert_row
        )
        if get_settings().cache == "none":
            self._cache = None  # nothing would keep it

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large(self.limit)
        self._sniffer.feed(data)
        self._sha.update(data)
        assert self._writer is not None
        self._writer.write(data)
        if self._cache is not None:
            if len(self._cache) + len(data) > audio_store.CACHE_MAX_BYTES:
                self._cache = None  # too big to cache: stages read PostgreSQL
            else:
                self._cache += data

    @property
    def format(self) -> str | None:
        return self._sniffer.format

    def finish(self) -> None:
        """The recording is whole: refuse it if empty or not audio. When rows were written
        already, the last one is written now; a recording smaller than one chunk waits in
        memory for `close`, after its call row."""
        if self.size == 0:
            raise ApiError(422, "empty_file", "the recording is empty")
        self._sniffer.finish()
        assert self._writer is not None
        if self._writer.started:
            self._writer.close()

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._writer is not None
        self._writer.__exit__(*exc)

    def close(self) -> None:
        """Write what is left (inserting the call row first if no chunk was written yet)."""
        assert self._writer is not None
        self._writer.close()

    @property
    def sha256(self) -> str:
        return str(self._sha.hexdigest())

    @property
    def cached_bytes(self) -> bytes | None:
        return bytes(self._cache) if self._cache is not None else None


def _malformed(reason: str) -> ApiError:
    return ApiError(400, "malformed_multipart", f"malformed multipart body: {reason}")


def _boundary(request: flask.Request) -> bytes:
    """The multipart boundary of the Content-Type (werkzeug's parse, already made for the
    mimetype). A header werkzeug finds none in is read again the way it always was (the email
    package also takes `boundary = x`, with spaces around the `=`)."""
    boundary = request.mimetype_params.get("boundary")
    if not boundary and request.content_type:
        message = EmailMessage()
        message["content-type"] = request.content_type
        boundary = message.get_boundary()
    if not boundary:
        raise ApiError(400, "malformed_multipart", "the Content-Type has no multipart boundary")
    if not boundary.isascii():
        raise ApiError(400, "malformed_multipart", "the multipart boundary must be ASCII")
    return boundary.encode("ascii")


# The Content-Disposition every client sends: read here. email and werkzeug disagree on
# anything else (repeated parameters, RFC 2231/2047 encodings, unterminated quotes, `%22`,
# spaces around `=`): that is read as it always was, by the email package (slower, rare).
_PLAIN_DISPOSITION = re.compile(r'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')
_HEADER_PARSER = Parser(policy=HTTP)


def _disposition(value: str) -> tuple[str, str | None, str | None] | None:
    """(disposition type, name, filename) of a part's Content-Disposition; None when the
    email package does not see the header at all (the part is then skipped)."""
    plain = _PLAIN_DISPOSITION.fullmatch(value)
    if plain is not None and "=?" not in value:  # `=?` may start an RFC 2047 encoded word
        return "form-data", plain[1], plain[2]
    message = _HEADER_PARSER.parsestr(f"Content-Disposition: {value}\r\n")
    header = message["content-disposition"]
    if header is None:
        return None
    return (
        message.get_content_disposition() or "",
        header.params.get("name"),
        header.params.get("filename"),
    )


def _media_type(value: str) -> str:
    """A part's Content-Type as the email package normalizes it: `type/subtype` in lower
    case without parameters, `text/plain` when it is not one (RFC 2045 5.2)."""
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "text/plain"


class _StrictDecoder(MultipartDecoder):
    """werkzeug's incremental multipart decoder, held to what ingest has always accepted:

    - a delimiter is exactly CRLF `--boundary` then CRLF or `--` (werkzeug also takes a lone
      CR or LF and white space after the boundary, in the middle of binary audio too);
    - a part's headers end with CRLF CRLF and have no bare CR (werkzeug also ends them at
      LF LF or CR CR), and take at most MAX_PART_HEADER_BYTES (413);
    - a part without Content-Disposition is skipped like an unknown part (werkzeug refuses
      the whole body).

    Its buffer stays bounded: it holds one read, plus a part's header block until the block
    is whole (`max_form_memory_size`)."""

    def __init__(self, boundary: bytes) -> None:
        held = len(b"\r\n--" + boundary + b"-")  # see _MultipartForm
        limit = READ_BYTES + held + MAX_PART_HEADER_BYTES
        super().__init__(boundary, max_form_memory_size=limit)
        self.boundary_re = re.compile(rb"\r\n--%s(--|\r\n)" % re.escape(boundary))

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        """`data` is the start of the buffer, up to the empty line that ends the headers."""
        if len(data) > MAX_PART_HEADER_BYTES:
            raise RequestEntityTooLarge()
        # Ended at a bare LF LF or CR CR, or broken at a bare CR, a part's headers could
        # swallow the next delimiter and part.
        if self.buffer[len(data) : len(data) + 4] != b"\r\n\r\n":
            raise ValueError("a part's headers must end with an empty line (CRLF CRLF)")
        if b"\r" in data.replace(b"\r\n", b""):
            raise ValueError("a CR without LF in a part's headers")
        headers = super()._parse_headers(data)
        if "content-disposition" not in headers:
            headers.add("Content-Disposition", "form-data")  # no name: nothing reads the part
        return headers


class _FilePart:
    """The `file` part: its bytes go to the audio sink as they arrive."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.seen = False
        self.complete = False  # its closing delimiter arrived: the file is whole
        self.filename: str | None = None
        self.content_type: str | None = None

    def start(self, filename: str | None) -> None:
        if self.seen:
            raise ApiError(422, "invalid_field", "send exactly one `file` part")
        self.seen = True
        self.filename = filename


class _SmallField:
    """`external_id` or `metadata`: every part of that name, as one value (repeated parts
    are concatenated, as they always were), refused past its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.value = bytearray()

    def start(self, filename: str | None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.value += data
        if len(self.value) > self.limit:
            raise ApiError(413, "field_too_large", "a form field is too large")


class _MultipartForm:
    """Reads a multipart/form-data body as it streams in (`feed` each read, then `close`):
    the `file` part's bytes go to `write_file` as they arrive, `external_id` and `metadata`
    are kept (small, limited), any other part is skipped. Nothing else is held but a read
    and a part's header block.

    The grammar is the one ingest has always accepted (RFC 7578 with CRLF line breaks):
    nothing but CRLFs before the first boundary; a part's headers read one by one in their
    order (a Content-Type counts once a Content-Disposition named the part); everything
    after the closing boundary ignored. werkzeug's decoder does the rest (`_StrictDecoder`).

    werkzeug 3.1.9 appends a stray CR to a part, or misses its delimiter, when its buffer
    ends with `CRLF--boundary` and one more byte of the delimiter (`-` or CR): it holds back
    a partial delimiter of up to `CRLF--boundary` only (pallets/werkzeug#3285). Such a
    read's last bytes wait for the next read here, so the decoder never sees that cut."""

    def __init__(self, boundary: bytes, write_file: Callable[[bytes], None]) -> None:
        self._first_line = b"--" + boundary
        self._cut_delimiters = (b"\r\n--" + boundary + b"-", b"\r\n--" + boundary + b"\r")
        self._cut_length = len(self._cut_delimiters[0])
        self._decoder = _StrictDecoder(boundary)
        self.file = _FilePart(write_file)
        self.external_id = _SmallField(MAX_ID_CHARS * 4)  # UTF-8 of the longest id, at most
        self.metadata = _SmallField(MAX_FIELD_BYTES)
        self._parts: dict[str, _FilePart | _SmallField] = {
            "file": self.file,
            "external_id": self.external_id,
            "metadata": self.metadata,
        }
        self._part: _FilePart | _SmallField | None = None
        self._opening = b""  # the body's first bytes, until they are known to be a boundary
        self._opened = False
        self._held = b""  # the end of a delimiter cut by the last read, for the next one
        self.ended = False  # the closing boundary arrived

    def feed(self, chunk: bytes) -> None:
        if self.ended:
            return  # the epilogue: ignored
        if not self._opened:
            chunk = self._open(chunk)
            if not chunk:
                return
        for start in range(0, len(chunk), READ_BYTES):  # the decoder's buffer limit is a read
            if self.ended:
                return
            data = self._held + chunk[start : start + READ_BYTES]
            self._held = b""
            tail = self._decoder.buffer[-self._cut_length :] + data[-self._cut_length :]
            if tail.endswith(self._cut_delimiters):
                keep = len(data) - min(self._cut_length, len(data))
                data, self._held = data[:keep], data[keep:]
            self._decode(data)

    def close(self) -> None:
        """The body ended: decode what was held back (a body cut there did not end)."""
        if self._held and not self.ended:
            self._decode(self._held)
        self._held = b""

    def _open(self, chunk: bytes) -> bytes:
        """The body must start with CRLFs (any number) and then `--boundary` followed by
        CRLF or `--` (an empty form): its bytes from the boundary on once that is known,
        b"" while undecided."""
        head = self._opening + chunk
        start = 0
        while head.startswith(b"\r\n", start):
            start += 2
        rest = head[start:]
        opening, empty_form = self._first_line + b"\r\n", self._first_line + b"--"
        if len(rest) < len(opening):
            if rest == b"\r" or opening.startswith(rest) or empty_form.startswith(rest):
                self._opening = rest
                return b""
        elif rest.startswith((opening, empty_form)):
            self._opening = b""
            self._opened = True
            return rest
        raise _malformed("it must begin with the boundary")

    def _decode(self, data: bytes) -> None:
        decoder = self._decoder
        try:
            decoder.receive_data(data)
        except RequestEntityTooLarge:
            raise _part_headers_too_large() from None
        while True:
            try:
                event = decoder.next_event()
            except RequestEntityTooLarge:
                raise _part_headers_too_large() from None
            except ValueError as exc:  # headers not UTF-8, or not CRLF lines (_StrictDecoder)
                raise _malformed(str(exc)) from None
            if isinstance(event, NeedData):
                break
            if isinstance(event, (Field, File)):
                self._start_part(event.headers)
            elif isinstance(event, Data):
                if self._part is not None:
                    self._part.write(event.data)
                    if not event.more_data:
                        if self._part is self.file:
                            self.file.complete = True
                        self._part = None
        if decoder.state is State.EPILOGUE:
            self.ended = True

    def _start_part(self, headers: Headers) -> None:
        """Each header line in its order, as ever: a Content-Disposition (which must be
        form-data) with a name starts that part, a Content-Type after it is the file's."""
        self._part = None
        for key, value in headers.items():
            key = key.lower()
            if key == "content-disposition":
                disposition = _disposition(value)
                if disposition is None:
                    continue
                kind, name, filename = disposition
                if kind != "form-data":
                    raise _malformed(f"a part's Content-Disposition is {kind!r}, not form-data")
                if name:
                    self._part = self._parts.get(name)
                    if self._part is not None:
                        self._part.start(filename)
            elif key == "content-type" and self._part is self.file:
                self.file.content_type = _media_type(value)


def _part_headers_too_large() -> ApiError:
    return ApiError(
        413,
        "part_headers_too_large",
        f"the headers of a multipart part exceed {MAX_PART_HEADER_BYTES} bytes",
    )


@dataclass
class IngestRequest:
    identity: Identity
    external_id: str | None
    idempotency_key: str | None
    metadata: dict[str, Any]
    origin: str
    filename: str | None = None
    declared_content_type: str | None = None
    audio_url: str | None = None


@dataclass
class _Stored:
    call_id: uuid.UUID
    body: dict[str, Any]
    cached: bytes | None


@dataclass
class _Attempt:
    """What a lost race is looked up by (see `_duplicate_after_race`)."""

    identity: Identity | None = None
    idempotency_key: str | None = None
    external_id: str | None = None


class _Duplicate(Exception):
    def __init__(self, call_id: uuid.UUID) -> None:
        super().__init__("duplicate")
        self.call_id = call_id


def _existing_id(
    executor: Any, source_id: uuid.UUID, external_id: str | None, idempotency_key: str | None
) -> uuid.UUID | None:
    if external_id:
        found = executor.execute(
            select(CALLS.c.id).where(
                CALLS.c.source_id == source_id, CALLS.c.external_id == external_id
            )
        ).scalar_one_or_none()
        if found is not None:
            return found  # type: ignore[no-any-return]
    if idempotency_key:
        return executor.execute(  # type: ignore[no-any-return]
            select(CALLS.c.id).where(
                CALLS.c.source_id == source_id, CALLS.c.idempotency_key == idempotency_key
            )
        ).scalar_one_or_none()
    return None


def _duplicate_response(identity: Identity, call_id: uuid.UUID) -> flask.Response:
    with unit_of_work() as session:
        body = call_json(session, call_id)
    if identity.role == Role.SOURCE:
        body = for_source(body)
    response = flask.make_response(body, 200)
    response.headers["Location"] = f"/api/v1/calls/{call_id}"
    return response


def _accepted(stored: _Stored) -> flask.Response:
    """202 with the call as it was committed (built from what the ingest transaction wrote:
    nothing is read back)."""
    response = flask.make_response(stored.body, 202)
    response.headers["Location"] = f"/api/v1/calls/{stored.call_id}"
    return response


def _store_call(
    tx: Transaction,
    req: IngestRequest,
    call: NewCall,
    sink: AudioSink,
    traceparent: str | None,
) -> _Stored:
    """Complete the call's row (one INSERT, or an UPDATE when chunks were written during the
    body), write the last chunk, the timeline entry and the `call.received` event."""
    final: dict[str, Any] = {
        "external_id": req.external_id,
        "metadata": req.metadata,
        "filename": req.filename,
        "declared_content_type": req.declared_content_type,
        "size_bytes": sink.size,
        "sha256": sink.sha256,
        "format": sink.format,
        "updated_at": utcnow(),
    }
    call.values.update(final)
    if call.inserted:
        tx.execute(update(CALLS).where(CALLS.c.id == call.id).values(**final))
    sink.close()  # inserts the row first when no chunk was written yet
    received = timeline_entry(
        call.id, "ingest", "received", size_bytes=sink.size, format=sink.format, origin=req.origin
    )
    outbox.add_event(
        tx,
        ev.CALL_RECEIVED,
        call.id,
        {"call_id": str(call.id), "format": sink.format, "size_bytes": sink.size},
        traceparent=traceparent,
        timeline=[received],
    )
    metrics.call_received(tx, sink.size, req.origin)
    return _Stored(call.id, created_call_json(call.values, [received]), sink.cached_bytes)


Authorize = Callable[[Transaction], Identity]


def ingest(request: flask.Request, authorize: Authorize) -> flask.Response:
    """POST /api/v1/calls. `authorize` finishes authenticating the caller on the upload's
    own transaction (a bearer token's user lookup is its first statement), so that an upload
    is one transaction from the credentials to the event. An `audio_url` is downloaded between
    two transactions, never inside one (`_ingest_url`)."""
    settings = get_settings()
    attempt = _Attempt()
    try:
        if request.mimetype == "application/json":
            stored = _ingest_url(request, authorize, attempt)
        else:
            with transaction() as tx:
                identity, idempotency_key = _authorized(tx, request, authorize, attempt)
                if request.mimetype != "multipart/form-data":
                    raise ApiError(
                        415,
                        "unsupported_media_type",
                        "send the recording as multipart/form-data (`file`) or JSON with "
                        "`audio_url`",
                    )
                stored = _ingest_upload(
                    tx, request, identity, idempotency_key, settings.max_upload_bytes
                )
    except _Duplicate as dup:
        assert attempt.identity is not None  # a duplicate is found after authorizing
        return _duplicate_response(attempt.identity, dup.call_id)
    except IntegrityError:
        # A concurrent request with the same external_id or Idempotency-Key won the race.
        assert attempt.identity is not None
        return _duplicate_after_race(attempt.identity, attempt.idempotency_key, attempt.external_id)
    faults.point("ingest.after_commit_before_answer")  # stored; the source sees no answer
    if stored.cached is not None:
        audio_store.cache_put(stored.call_id, stored.cached)
    return _accepted(stored)


def _authorized(
    tx: Transaction, request: flask.Request, authorize: Authorize, attempt: _Attempt
) -> tuple[Identity, str | None]:
    """The caller (checked on `tx`) and the upload's Idempotency-Key."""
    identity = attempt.identity = authorize(tx)
    idempotency_key = _clean_id(request.headers.get("Idempotency-Key"), "Idempotency-Key")
    attempt.idempotency_key = idempotency_key
    return identity, idempotency_key


def _ingest_upload(
    tx: Transaction,
    request: flask.Request,
    identity: Identity,
    idempotency_key: str | None,
    limit: int,
) -> _Stored:
    length = request.content_length
    if length is not None and length > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    found = _existing_id(tx, identity.user_id, None, idempotency_key)
    if found is not None:
        raise _Duplicate(found)
    traceparent = obs_context.traceparent(request.headers.get("traceparent"))
    req = IngestRequest(identity, None, idempotency_key, {}, "upload")
    call = NewCall(tx, req)
    with AudioSink(tx, call, limit) as sink:
        form = _MultipartForm(_boundary(request), sink.write)
        stream = request.stream
        received = 0
        while chunk := stream.read(READ_BYTES):
            received += len(chunk)
            if received > limit + MULTIPART_OVERHEAD:
                raise _too_large(limit)
            form.feed(chunk)
        form.close()
        if not form.file.seen:
            raise ApiError(422, "file_missing", "the `file` part is missing")
        if not form.file.complete:
            raise ApiError(400, "malformed_multipart", "the body ended inside the file part")
        if not form.ended:
            raise ApiError(400, "malformed_multipart", "the body ended before its closing boundary")
        sink.finish()  # empty or not audio: refused before the fields are looked at
        try:
            ext_text = form.external_id.value.decode("utf-8") if form.external_id.value else None
        except UnicodeDecodeError:
            raise ApiError(422, "invalid_field", "external_id must be UTF-8") from None
        req.external_id = _clean_id(ext_text, "external_id")
        req.metadata = _clean_metadata(bytes(form.metadata.value))
        req.filename = _clean_filename(form.file.filename)
        req.declared_content_type = (form.file.content_type or "")[:255] or None
        # Same external_id from the same source: answer the existing call, create nothing.
        found = _existing_id(tx, identity.user_id, req.external_id, None)
        if found is not None and found != call.id:
            raise _Duplicate(found)
        return _store_call(tx, req, call, sink, traceparent)


def _duplicate_after_race(
    identity: Identity, idempotency_key: str | None, external_id: str | None
) -> flask.Response:
    with transaction() as tx:
        found = _existing_id(tx, identity.user_id, external_id, idempotency_key)
    if found is None:
        raise ApiError(409, "conflict", "a concurrent request created the same call; retry")
    return _duplicate_response(identity, found)


def _ingest_url(request: flask.Request, authorize: Authorize, attempt: _Attempt) -> _Stored:
    """JSON with `audio_url`: who asks and whether the call exists already (one short
    transaction), then the download into a temporary file with no transaction open (it may
    take DOWNLOAD_TIMEOUT_SECONDS: a pooled connection held that long, many at once, would
    starve everyone), then the call stored (a second transaction). A concurrent request that
    stored the same call meanwhile wins at the INSERT (IntegrityError, answered as a
    duplicate)."""
    settings = get_settings()
    with transaction() as tx:
        identity, idempotency_key = _authorized(tx, request, authorize, attempt)
        audio_url, external_id, metadata = _url_request(request)
        attempt.external_id = external_id
        found = _existing_id(tx, identity.user_id, external_id, idempotency_key)
        if found is not None:
            raise _Duplicate(found)
    traceparent = obs_context.traceparent(request.headers.get("traceparent"))
    limit = settings.max_upload_bytes
    req = IngestRequest(
        identity, external_id, idempotency_key, metadata, "url", audio_url=audio_url
    )
    with tempfile.TemporaryFile(prefix="cd-download-") as spool:
        _download(audio_url, req, spool, limit)
        spool.seek(0)
        with transaction() as tx, AudioSink(tx, NewCall(tx, req), limit) as sink:
            while chunk := spool.read(READ_BYTES):
                sink.write(chunk)
            sink.finish()
            return _store_call(tx, req, sink.call, sink, traceparent)


def _url_request(request: flask.Request) -> tuple[str, str | None, dict[str, Any]]:
    """`audio_url`, `external_id` and `metadata` of a JSON request, checked."""
    if request.content_length is not None and request.content_length > 2 * MAX_FIELD_BYTES:
        raise ApiError(413, "payload_too_large", "the JSON body is too large")
    raw = request.stream.read(2 * MAX_FIELD_BYTES + 1)
    if len(raw) > 2 * MAX_FIELD_BYTES:
        raise ApiError(413, "payload_too_large", "the JSON body is too large")
    try:
        body = load_json(raw)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    audio_url = body.get("audio_url")
    if not isinstance(audio_url, str) or not audio_url.strip():
        raise ApiError(422, "invalid_field", "audio_url is required (an http or https URL)")
    if len(audio_url) > 2048:
        raise ApiError(422, "invalid_field", "audio_url is too long")
    external_id = _clean_id(body.get("external_id"), "external_id")
    return audio_url, external_id, _clean_metadata(body.get("metadata"))


def _download(audio_url: str, req: IngestRequest, spool: Any, limit: int) -> None:
    """Download `audio_url` into `spool` (guarded: SSRF policy, size, time), refusing what is
    not audio as soon as its first bytes say so; the name and type it came with go to `req`."""
    from call_downloader.net.download import DownloadError, DownloadTooLarge, open_download
    from call_downloader.net.ssrf import ForbiddenTarget, Policy

    settings = get_settings()
    sniffer = FormatSniffer()
    try:
        with open_download(
            audio_url,
            policy=Policy.public_only(settings.audio_url_allowlist),
            max_bytes=limit,
            timeout=settings.download_timeout_seconds,
        ) as download:
            req.filename = _clean_filename(download.filename)
            req.declared_content_type = (download.content_type or "")[:255] or None
            for chunk in download.iter_chunks():
                sniffer.feed(chunk)
                spool.write(chunk)
    except ForbiddenTarget as exc:
        raise ApiError(422, "audio_url_forbidden", f"audio_url refused: {exc.reason}") from None
    except DownloadTooLarge:
        raise _too_large(limit) from None
    except DownloadError as exc:
        status = 413 if exc.code == "too_large" else 422
        raise ApiError(status, exc.code, f"audio_url download failed: {exc.message}") from None
