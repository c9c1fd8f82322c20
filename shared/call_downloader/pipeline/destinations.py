"""Destinations: where results are delivered. DELIVERY_URL/DELIVERY_SECRET are mirrored into
the `default` destination at start-up; admins add more from the UI (issue 4).

How far a destination may reach (SPEC 3.4, issue 16): the one of the configuration is trusted
(internal addresses are fine); one made through the API follows the `audio_url` rule: public
addresses only, unless DESTINATION_URL_ALLOWLIST lists the host (with its port). Checked when
it is made and again at every attempt (its name may resolve elsewhere by then)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from call_downloader.config import get_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Destination
from call_downloader.net.ssrf import Policy

DESTINATIONS = Destination.__table__
CONFIG_DESTINATION = "default"
SECRET_OVERLAP = timedelta(hours=24)


def ensure_config_destination() -> None:
    """Create or update the `default` destination from the environment (idempotent)."""
    settings = get_settings()
    try:
        with unit_of_work() as session:
            dest = session.execute(
                select(Destination).where(Destination.from_config.is_(True))
            ).scalar_one_or_none()
            if not settings.delivery_url:
                if dest is not None:
                    dest.enabled = False
                    dest.url = ""
                return
            if not settings.delivery_secret:
                raise RuntimeError("DELIVERY_URL is set but DELIVERY_SECRET is not")
            if dest is None:
                session.add(
                    Destination(
                        name=CONFIG_DESTINATION,
                        url=settings.delivery_url,
                        secret=settings.delivery_secret,
                        enabled=True,
                        from_config=True,
                    )
                )
                return
            # An operator may have disabled it in the UI: a restart does not undo that, but a
            # new DELIVERY_URL is a new decision and enables it.
            if dest.url != settings.delivery_url:
                dest.url = settings.delivery_url
                dest.enabled = True
            if dest.secret != settings.delivery_secret:
                # A new DELIVERY_SECRET: the old one keeps signing alongside for a while, so
                # receivers can switch without rejecting deliveries (Standard Webhooks).
                dest.previous_secret = dest.secret
                dest.previous_secret_expires_at = datetime.now(UTC) + SECRET_OVERLAP
                dest.secret = settings.delivery_secret
    except IntegrityError:
        pass  # another process created it at the same moment


def signing_secrets(dest: Any) -> list[str]:
    """The secrets that sign for `dest` (a `Destination`, or a row with its `secret`,
    `previous_secret` and `previous_secret_expires_at`): current first, then the previous one
    while its overlap lasts."""
    secrets = [dest.secret]
    expires = dest.previous_secret_expires_at
    if dest.previous_secret and expires is not None:
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if expires > datetime.now(UTC):
            secrets.append(dest.previous_secret)
    return secrets


def destination_policy(from_config: bool) -> Policy:
    """The address policy of a destination (`from_config`: DELIVERY_URL's)."""
    if from_config:
        return Policy.destination()
    return Policy.public_only(
        get_settings().destination_url_allowlist, setting="DESTINATION_URL_ALLOWLIST"
    )
