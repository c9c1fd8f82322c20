"""Strict request parsing for the calls API: every query parameter and body field is checked
against an allow-list and a type before anything reaches the database, so bad or hostile input
answers 4xx (never 5xx, never a query built from it)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import flask

from call_downloader.http.errors import ApiError

MAX_PARAM_LENGTH = 200
MAX_BODY_BYTES = 64 * 1024
_INT_RE = re.compile(r"^[0-9]{1,12}$")
# ISO 8601 date or date-time as `datetime.fromisoformat` reads it; the regex first keeps out
# the odd forms it would also take (week dates, no separators) so the meaning is unambiguous.
_D = "[0-9]"  # ASCII digits only (\d would also take other scripts' digits)
_DATE_RE = re.compile(
    rf"^{_D}{{4}}-{_D}{{2}}-{_D}{{2}}"
    rf"(?:[T ]{_D}{{2}}:{_D}{{2}}(?::{_D}{{2}}(?:\.{_D}{{1,6}})?)?(?:Z|[+-]{_D}{{2}}:{_D}{{2}})?)?$"
)


def bad(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}")


def query(request: flask.Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters as a dict: unknown, repeated, overlong or control-character
    values are refused."""
    out: dict[str, str] = {}
    for name in request.args:
        if name not in allowed:
            raise ApiError(
                400,
                "invalid_parameter",
                f"unknown query parameter {name[:50]!r}; allowed: "
                f"{', '.join(sorted(allowed)) or 'none'}",
            )
        values = request.args.getlist(name)
        if len(values) > 1:
            raise bad(name, "given more than once")
        value = values[0]
        if len(value) > MAX_PARAM_LENGTH:
            raise bad(name, f"longer than {MAX_PARAM_LENGTH} characters")
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise bad(name, "contains control characters")
        out[name] = value
    return out


def integer(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    if not _INT_RE.match(raw) or not lo <= int(raw) <= hi:
        raise bad(name, f"must be an integer from {lo} to {hi}")
    return int(raw)


def boolean(params: dict[str, str], name: str, default: bool) -> bool:
    """`true`/`1` or `false`/`0`; empty or absent: `default`."""
    raw = params.get(name, "")
    if raw == "":
        return default
    if raw not in ("true", "false", "1", "0"):
        raise bad(name, "must be true or false")
    return raw in ("true", "1")


def parse_datetime(raw: str, name: str) -> datetime:
    if not _DATE_RE.match(raw):
        raise bad(name, "must be an ISO 8601 date or date-time, e.g. 2026-01-31T12:00:00Z")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad(name, "is not a valid date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def date_time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name, "")
    return parse_datetime(raw, name) if raw else None


def uuid_param(params: dict[str, str], name: str) -> uuid.UUID | None:
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad(name, "must be a UUID") from None


def choice_list(params: dict[str, str], name: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated list of values from `allowed` (empty: no filter)."""
    raw = params.get(name, "")
    if not raw:
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise bad(name, f"unknown value {unknown[0][:50]!r}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(values))


def path_uuid(raw: str, what: str) -> uuid.UUID:
    """A UUID from the path; anything else is simply not found."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, "not_found", f"no such {what}") from None


def json_body(
    request: flask.Request, allowed: set[str], *, empty_ok: bool = True
) -> dict[str, Any]:
    """The body as a JSON object with only `allowed` fields (an empty body is `{}`)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if empty_ok:
            return {}
        raise ApiError(400, "invalid_body", "a JSON object is required")
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        data = flask.json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = sorted(str(k)[:50] for k in data if k not in allowed)
    if unknown:
        raise ApiError(422, "validation_error", f"unknown field(s): {', '.join(unknown)}")
    return data


def body_string(
    data: dict[str, Any], name: str, *, required: bool = False, max_length: int = 200
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(422, "validation_error", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "validation_error", f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise ApiError(422, "validation_error", f"{name} is required")
    if len(value) > max_length:
        raise ApiError(422, "validation_error", f"{name} is longer than {max_length} characters")
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise ApiError(422, "validation_error", f"{name} contains control characters")
    return value


def body_bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ApiError(422, "validation_error", f"{name} must be true or false")
    return value


def body_int(data: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(422, "validation_error", f"{name} must be an integer from {lo} to {hi}")
    return value


def body_datetime(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError(422, "validation_error", f"{name} must be an ISO 8601 date-time")
    try:
        return parse_datetime(value, name)
    except ApiError as exc:
        raise ApiError(422, "validation_error", exc.message) from None


def body_uuid(data: dict[str, Any], name: str) -> uuid.UUID | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ApiError(422, "validation_error", f"{name} must be a UUID")
