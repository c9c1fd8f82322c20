"""The auth function served by functions-framework's Flask app, on the real PostgreSQL
(fixture `db`) and the real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import ADMIN, login

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "functions" / "auth" / "main.py"


def patient_throttle() -> Any:
    """The login delays with the product's free attempts, but waits of a minute and more:
    no test outcome then depends on how long bcrypt takes on a busy machine."""
    from dataclasses import replace

    from call_downloader.security import throttle

    return throttle.LoginThrottle(
        *(
            replace(schedule, first=60.0, longest=max(schedule.longest, 60.0))
            for schedule in (
                throttle.PER_ACCOUNT_AND_ADDRESS,
                throttle.PER_ADDRESS,
                throttle.PER_ACCOUNT,
            )
        )
    )


def _clear_auth_keys() -> None:
    from call_downloader.storage.redis_client import get_redis, key

    client = get_redis()
    for k in client.scan_iter(key("auth", "*")):
        client.delete(k)


@pytest.fixture
def client(db) -> Iterator[Any]:
    import functions_framework

    from call_downloader.security import api, throttle
    from call_downloader.storage.redis_client import reset_redis

    reset_redis()
    _clear_auth_keys()
    api._bootstrapped = False  # each test's database starts empty
    throttle._default = patient_throttle()
    app = functions_framework.create_app(target="auth", source=str(SOURCE))
    yield app.test_client()
    _clear_auth_keys()
    reset_redis()


@pytest.fixture
def admin_tokens(client) -> dict[str, Any]:
    response = login(client, *ADMIN)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def admin_token(admin_tokens) -> str:
    return admin_tokens["access_token"]
