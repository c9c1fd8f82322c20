"""One settings object, read from the environment once (SPEC 3.4).

Nothing here connects to anything: `get_settings()` only parses variables, lazily, and caches
the result so every module of a process sees the same configuration.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from typing import Annotated

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from call_downloader.security import secret_rules

DEFAULT_AI_RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
# Close to the schedule the issue asks for: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_DELIVERY_RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


# The settings that take one of a few words, the first being the default.
_CHOICES = {
    "ai_protocol": ("default", "openai"),
    "event_transport": ("rabbitmq", "database"),
    "cache": ("redis", "none"),
    "rabbitmq_dead_lettering": ("arguments", "policy"),
}


def _parse_delays(value: object) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        items = [float(v) for v in value]
    else:
        text = str(value).strip()
        items = [float(part) for part in text.split(",") if part.strip()] if text else []
    if any(d < 0 for d in items):
        raise ValueError("retry delays must be >= 0 seconds")
    return tuple(items)


def _parse_list(value: object) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value or "").split(",") if part.strip())


def sqlalchemy_url(url: str) -> str:
    """Accept the `postgresql://` form users write; SQLAlchemy needs the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    # An empty variable means "not set" (compose passes `VAR=` through), falling back to defaults.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/call_downloader"
    # Statements prepared at first use; the hot path's planned once per connection (a generic
    # plan, set per connection). Off behind a pooler that does not keep a client on one server
    # connection or refuses prepared statements (PgBouncer in transaction mode).
    database_generic_plans: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # "rabbitmq", or "database" (embedded mode: the queues are rows of the database).
    event_transport: str = "rabbitmq"
    # "redis", or "none" (embedded mode without Redis: no audio cache, in-memory throttling).
    cache: str = "redis"
    # Prefix of every exchange and queue name: lets several deployments (or test runs) share
    # one broker without seeing each other's events.
    event_namespace: str = "calldl"
    # Where a function queue's dead-letter route and delivery limit live: "arguments" (set by
    # the topology on each queue) or "policy" (a RabbitMQ policy, `call-downloader topology
    # --print-policies`), for consumers that redeclare the queues without arguments (the
    # OpenFaaS RabbitMQ connector) in a virtual host whose default queue type is quorum.
    rabbitmq_dead_lettering: str = "arguments"

    ai_url: str = ""
    ai_protocol: str = "default"  # "default" or "openai"
    ai_model: str = "whisper-1"
    ai_api_key: str = ""
    ai_timeout_seconds: float = 120.0
    # How long an asynchronous AI (202 + callback) may take before the call is re-sent.
    ai_callback_timeout_seconds: float = 3600.0
    ai_retry_delays: Annotated[tuple[float, ...], NoDecode] = DEFAULT_AI_RETRY_DELAYS

    delivery_url: str = ""
    delivery_secret: str = ""
    delivery_timeout_seconds: float = 15.0
    delivery_retry_delays: Annotated[tuple[float, ...], NoDecode] = DEFAULT_DELIVERY_RETRY_DELAYS

    jwt_secret: str = ""
    jwt_issuer: str = "call-downloader"
    jwt_audience: str = "call-downloader-api"
    access_token_minutes: int = 15
    refresh_token_days: int = 14

    # The header the proxy in front (the gateway) sets to the client's address, overwriting
    # whatever the client sent (`X-Real-IP` behind the shipped gateways); empty: the TCP peer.
    client_ip_header: str = ""
    # `make run`'s gateway: addresses or CIDR ranges of proxies in front of it whose X-Real-IP
    # it believes (the Nginx gateway reads the same variable); empty: it is the edge.
    real_ip_from: Annotated[tuple[str, ...], NoDecode] = ()

    admin_username: str = ""
    admin_password: str = ""

    max_upload_bytes: int = 2 * 1024**3
    download_timeout_seconds: float = 300.0
    audio_url_allowlist: Annotated[tuple[str, ...], NoDecode] = ()
    # What destinations made through the API may reach although not public (same syntax).
    destination_url_allowlist: Annotated[tuple[str, ...], NoDecode] = ()
    # When set, every outbound connection (downloads, the AI, webhooks, destination tests)
    # goes only to these hosts and CIDR ranges, whatever else allows it (net.ssrf.Egress).
    egress_allowlist: Annotated[tuple[str, ...], NoDecode] = ()

    # Public base URL the AI uses to post asynchronous results back (SPEC 3.2).
    public_base_url: str = "http://127.0.0.1:8080"
    port: int = 8080
    audio_cache_ttl_seconds: int = 3600
    dispatcher_max_attempts: int = 8
    dispatcher_concurrency: int = 8
    # `make run` only: dispatcher processes started beside the server process, so the stages
    # use more than one core (one Python process is CPU-bound at one core). Unset: one per
    # core beyond the first. Embedded mode (SQLite, database queues) always runs one process.
    run_dispatcher_processes: int | None = None
    outbox_poll_seconds: float = 1.0
    data_dir: str = ".data"

    @field_validator("ai_retry_delays", "delivery_retry_delays", mode="before")
    @classmethod
    def _delays(cls, value: object) -> tuple[float, ...]:
        return _parse_delays(value)

    @field_validator("audio_url_allowlist", "destination_url_allowlist", mode="before")
    @classmethod
    def _allowlist(cls, value: object) -> tuple[str, ...]:
        return _parse_list(value)

    @field_validator("real_ip_from", mode="before")
    @classmethod
    def _real_ip_from(cls, value: object) -> tuple[str, ...]:
        ranges = _parse_list(str(value).replace(" ", ",") if isinstance(value, str) else value)
        for entry in ranges:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR range") from None
        return ranges

    @field_validator("client_ip_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("CLIENT_IP_HEADER must be a header name, e.g. X-Real-IP")
        return value

    @field_validator("egress_allowlist", mode="before")
    @classmethod
    def _egress(cls, value: object) -> tuple[str, ...]:
        entries = _parse_list(value)
        from call_downloader.net.ssrf import Egress

        Egress(entries)  # a bad entry stops the process at start, not a request later
        return entries

    @field_validator("ai_protocol", "event_transport", "cache", "rabbitmq_dead_lettering")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        allowed = _CHOICES[info.field_name or ""]
        value = value.strip().lower()
        if value not in allowed:
            names = " or ".join(f"'{a}'" for a in allowed)
            raise ValueError(f"{(info.field_name or '').upper()} must be {names}")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: str) -> str:
        # Empty: not configured (`make run` generates one; the functions then answer 503).
        secret_rules.check_jwt_secrets(_parse_list(value))
        return value

    @field_validator("delivery_secret")
    @classmethod
    def _delivery_secret(cls, value: str) -> str:
        if value.strip():
            try:
                secret_rules.check_webhook_secret(value)
            except ValueError as exc:
                raise ValueError(f"DELIVERY_SECRET: {exc}") from None
        return value

    @field_validator("max_upload_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("MAX_UPLOAD_BYTES must be positive")
        return value

    @property
    def sqlalchemy_database_url(self) -> str:
        return sqlalchemy_url(self.database_url)

    @property
    def jwt_secrets(self) -> tuple[str, ...]:
        """`JWT_SECRET` may list the current secret first and previous ones after, comma-separated,
        so a secret can be rotated without logging everyone out."""
        return _parse_list(self.jwt_secret)


class ConfigurationError(ValueError):
    """A setting is refused. The message names the variables, never their values, so it may
    be printed and logged."""


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = str(error["loc"][0]).upper() if error.get("loc") else "settings"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(message if message.startswith(name) else f"{name}: {message}")
    return "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    # SECRETS_DIR: one file per setting (OpenFaaS and Kubernetes mount secrets as files).
    secrets_dir = os.environ.get("SECRETS_DIR") or None
    try:
        return Settings(_secrets_dir=secrets_dir)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def reset_settings() -> None:
    """Forget the cached settings (tests and the `make run` launcher change the environment)."""
    get_settings.cache_clear()
