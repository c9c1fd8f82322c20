"""Structured JSON logs: one line per record, with the call id, CloudEvent id and trace id of
the request or event being handled (context.py), and never a secret or an audio byte.

- `configure()` sends every record to stderr as one JSON object per line. It installs a log
  record factory that snapshots the current scope onto each record (`calldl_context`), so the
  fields are right whichever handler formats the record, and in whichever thread.
- `Redactor` scrubs what must never be written: passwords, tokens, API keys, signing secrets,
  signatures, URL credentials, the configured secret values themselves, and byte strings
  (audio) in arguments. It runs on the message, the exception text and every extra field.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from call_downloader.observability import context

# Extra fields a call site may add (`extra={...}`) besides the context fields; anything else is
# dropped, so an accidental `extra={"headers": ...}` cannot leak.
EXTRA_FIELDS = (
    "outcome",
    "duration_ms",
    "status",
    "method",
    "path",
    "attempt",
    "destination",
    "webhook_id",
    "reason",
)
MAX_MESSAGE_CHARS = 8000
REDACTED = "[REDACTED]"

# Names whose values are secret (not secrets themselves).
_SECRET_NAMES = "|".join(
    (
        r"password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|id_token",
        r"api[_-]?key|apikey|x-api-key|authorization|signature|webhook-signature|jwt",
        r"private_key|secret_key|credentials?",
    )
)


def _keep_quotes(m: re.Match[str]) -> str:
    value = m.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{m.group(1)}{quote}{REDACTED}{quote}"


_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    # Authorization: Bearer <token> / Basic <b64>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)@"), rf"\1{REDACTED}@"),
    # Standard Webhooks secrets and signatures, API keys of this product, OpenAI-style keys.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), f"whsec_{REDACTED}"),
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{16,}"), f"v1,{REDACTED}"),
    (re.compile(r"\bcdk_[A-Za-z0-9_-]{8,}"), f"cdk_{REDACTED}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), f"sk-{REDACTED}"),
    # JWTs (access, refresh and AI callback tokens).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # A long bytes repr is audio (or some other payload): never in a log line.
    (re.compile(r"\bb(['\"])(?:\\.|(?!\1).){48,}?\1"), "<bytes redacted>"),
    # name=value, name: value, "name": "value", 'name': 'value' (query strings, headers, JSON,
    # Python reprs).
    (
        re.compile(
            rf"(?i)([\"']?\b(?:{_SECRET_NAMES})\b[\"']?\s*[=:]\s*)"
            r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|(?!\[REDACTED\])[^\s&,;\"'}\])]+)"
        ),
        _keep_quotes,
    ),
)
# Every pattern above needs one of these in the text (its anchor: a scheme separator, a
# prefix, a quote after b, a secret name), looked for in the lowercased text: a superset of
# what the patterns match. Most of a log line's values (ids, names, routes) hold none, and
# substring tests are far cheaper than nine substitutions (or one regex alternation).
_ANCHORS = (
    "bearer",
    "basic",
    "://",
    "whsec_",
    "v1,",
    "cdk_",
    "sk-",
    "eyj",
    "b'",
    'b"',
    "passw",
    "pwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "signature",
    "jwt",
    "private_key",
    "credential",
)


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    for anchor in _ANCHORS:  # a plain loop: any() over a generator costs twice as much
        if anchor in lowered:
            return True
    return False


_SECRET_ENV = re.compile(r"(?i)(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|_KEY)$")
_MIN_SECRET_CHARS = 6


class Redactor:
    """Scrubs secrets from text. Known secret values (configuration) are replaced literally."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for value in secrets or ():
            self.add_secret(value)

    def add_secret(self, value: str | None) -> None:
        if not value or len(value) < _MIN_SECRET_CHARS:
            return
        with self._lock:
            if value not in self._secrets:
                # Longest first: a secret containing another is replaced whole.
                self._secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if not _may_hold_secret(text):
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(str(value))


def _safe_arg(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def _message(record: logging.LogRecord) -> str:
    msg = record.msg
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return f"<{len(msg)} bytes>"
    args = record.args
    if args:
        if isinstance(args, dict):
            args = {k: _safe_arg(v) for k, v in args.items()}
        else:
            args = tuple(_safe_arg(a) for a in args)
        try:
            return str(msg) % args
        except (TypeError, ValueError, KeyError):
            return f"{msg} {args!r}"  # a bad format string must not lose the line
    return str(msg)


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        scrub = self.redactor.value
        text = scrub(_message(record))
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS] + "…[truncated]"
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": text,
        }
        ctx = getattr(record, "calldl_context", None) or {}
        for name in context.FIELDS:
            value = getattr(record, name, None)  # an explicit extra wins over the scope
            if value is None:
                value = ctx.get(name)
            if value is not None:
                entry[name] = scrub(value)
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = scrub(value)
        if record.exc_info:
            entry["exc"] = self.redactor.scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = self.redactor.scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redactor.scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


REDACTOR = Redactor()
_factory_lock = threading.Lock()
_factory_installed = False


def install_record_factory() -> None:
    """Every record snapshots the current scope (idempotent; wraps the existing factory)."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            ctx = context.current()
            if ctx:
                record.calldl_context = ctx
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def register_env_secrets(redactor: Redactor | None = None) -> None:
    """Teach the redactor the values of the environment's secret-named variables."""
    redactor = redactor or REDACTOR
    for name, value in os.environ.items():
        if _SECRET_ENV.search(name):
            for part in value.split(","):  # JWT_SECRET may list several
                redactor.add_secret(part.strip())


def register_configured_secrets(redactor: Redactor | None = None) -> None:
    """Teach the redactor the secret values of this process's configuration."""
    redactor = redactor or REDACTOR
    register_env_secrets(redactor)
    try:
        from sqlalchemy.engine import make_url

        from call_downloader.config import get_settings

        s = get_settings()
        for value in (s.delivery_secret, s.ai_api_key, s.admin_password, *s.jwt_secrets):
            redactor.add_secret(value)
        for url in (s.database_url, s.redis_url, s.rabbitmq_url):
            try:
                redactor.add_secret(make_url(url).password)
            except Exception:  # not a URL SQLAlchemy parses: the URL pattern still applies
                pass
    except Exception:  # invalid configuration: it will be reported where it is used
        pass


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure() installed, so re-configuring replaces only it."""


def configure(level: str | None = None, stream: Any = None, settings_secrets: bool = True) -> None:
    """JSON lines on stderr for every logger (idempotent; other handlers are kept).
    settings_secrets=False: the caller registers the configuration's secrets itself, later
    (a function's warm-up: reading the settings is not cheap at cold start)."""
    install_record_factory()
    if settings_secrets:
        register_configured_secrets()
    else:
        register_env_secrets()
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    for noisy in ("pika", "httpx", "httpcore", "werkzeug", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
