"""The `default` destination mirrors DELIVERY_URL/DELIVERY_SECRET without undoing operators."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from call_downloader.config import reset_settings
from call_downloader.db.engine import unit_of_work
from call_downloader.db.models import Destination
from call_downloader.pipeline.destinations import ensure_config_destination, signing_secrets

pytestmark = pytest.mark.integration
SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_B = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def configure(monkeypatch, url: str, secret: str = SECRET_A) -> Destination:
    monkeypatch.setenv("DELIVERY_URL", url)
    monkeypatch.setenv("DELIVERY_SECRET", secret)
    reset_settings()
    ensure_config_destination()
    with unit_of_work() as session:
        return session.execute(select(Destination).where(Destination.from_config)).scalar_one()


def test_created_then_secret_rotation_keeps_the_old_secret_signing(db, monkeypatch):
    dest = configure(monkeypatch, "http://127.0.0.1:9/hook")
    assert dest.enabled and dest.secret == SECRET_A and dest.previous_secret is None
    dest = configure(monkeypatch, "http://127.0.0.1:9/hook", SECRET_B)
    assert dest.secret == SECRET_B and dest.previous_secret == SECRET_A
    assert signing_secrets(dest) == [SECRET_B, SECRET_A]


def test_operator_disable_survives_a_restart_but_a_new_url_enables(db, monkeypatch):
    dest = configure(monkeypatch, "http://127.0.0.1:9/hook")
    with unit_of_work() as session:
        session.get(Destination, dest.id).enabled = False
    assert not configure(monkeypatch, "http://127.0.0.1:9/hook").enabled
    assert configure(monkeypatch, "http://127.0.0.1:9/other").enabled


def test_unsetting_delivery_url_disables_it(db, monkeypatch):
    configure(monkeypatch, "http://127.0.0.1:9/hook")
    monkeypatch.setenv("DELIVERY_URL", "")
    reset_settings()
    ensure_config_destination()
    with unit_of_work() as session:
        dest = session.execute(select(Destination).where(Destination.from_config)).scalar_one()
    assert not dest.enabled
    assert configure(monkeypatch, "http://127.0.0.1:9/hook").enabled
