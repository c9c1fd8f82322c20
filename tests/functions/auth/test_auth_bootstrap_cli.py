"""The bootstrap admin (idempotent, concurrent starts) and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from auth_helpers import BASE, bearer, login


def _users():
    from sqlalchemy import select

    from call_downloader.db.engine import unit_of_work
    from call_downloader.db.models import User

    with unit_of_work() as session:
        return [(u.username, u.role) for u in session.scalars(select(User))]


def test_ensure_admin_user_is_idempotent_under_concurrent_starts(db):
    from call_downloader.security.identity import ensure_admin_user

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start():
        try:
            barrier.wait()
            ensure_admin_user()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _users() == [("admin", "admin")]
    ensure_admin_user()
    assert _users() == [("admin", "admin")]


def test_no_bootstrap_admin_when_a_user_exists(db, monkeypatch):
    from call_downloader.config import reset_settings
    from call_downloader.db.engine import unit_of_work
    from call_downloader.security.identity import ensure_admin_user
    from call_downloader.security.users import create_user

    with unit_of_work() as session:
        create_user(session, "someone", "viewer", "a-good-password-1")
    monkeypatch.setenv("ADMIN_USERNAME", "other-admin")
    reset_settings()
    ensure_admin_user()
    assert _users() == [("someone", "viewer")]


def test_bad_bootstrap_password_is_a_clear_error(db, monkeypatch):
    from call_downloader.config import reset_settings
    from call_downloader.security.identity import ensure_admin_user

    monkeypatch.setenv("ADMIN_PASSWORD", "short")
    reset_settings()
    with pytest.raises(ValueError, match="ADMIN_PASSWORD"):
        ensure_admin_user()
    assert _users() == []


def _cli(*args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "call_downloader.security.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )


def test_cli_user_create_and_login(client):
    result = _cli("user", "create", "--username", "cli-op", "--role", "operator",
                  "--password-stdin", stdin="cli-password-123\n")
    assert result.returncode == 0, result.stderr
    assert "cli-op" in result.stdout and "cli-password-123" not in result.stdout
    assert login(client, "cli-op", "cli-password-123").status_code == 200

    dup = _cli("user", "create", "--username", "cli-op", "--role", "viewer", "--password-stdin",
               stdin="cli-password-123\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr

    weak = _cli("user", "create", "--username", "cli-weak", "--role", "viewer",
                "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least 10" in weak.stderr

    no_tty = _cli("user", "create", "--username", "cli-none", "--role", "viewer")
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr

    bad_role = _cli("user", "create", "--username", "x-role", "--role", "root",
                    "--password-stdin", stdin="cli-password-123\n")
    assert bad_role.returncode == 2  # argparse usage error


def test_cli_create_admin_and_api_key(client):
    result = _cli("create-admin", "--username", "root-two", "--password-stdin",
                  stdin="admin-two-password\n")
    assert result.returncode == 0, result.stderr
    token = login(client, "root-two", "admin-two-password").get_json()["access_token"]
    assert client.get(f"{BASE}/users", headers=bearer(token)).status_code == 200

    made = _cli("user", "create", "--username", "cli-pbx", "--role", "source", "--no-password")
    assert made.returncode == 0, made.stderr
    key_run = _cli("api-key", "create", "--username", "cli-pbx", "--name", "from shell")
    assert key_run.returncode == 0, key_run.stderr
    key = key_run.stdout.strip()
    assert key.startswith("cdk_") and key not in key_run.stderr
    me = client.get(f"{BASE}/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.get_json()["username"] == "cli-pbx"

    listing = _cli("api-key", "list", "--username", "cli-pbx")
    assert listing.returncode == 0 and key not in listing.stdout and "cli-pbx" in listing.stdout

    no_pw_admin = _cli("user", "create", "--username", "x-admin", "--role", "admin",
                       "--no-password")
    assert no_pw_admin.returncode == 1


def test_cli_from_env_bootstraps(client):
    result = _cli("create-admin", "--from-env")
    assert result.returncode == 0, result.stderr
    assert _users() == [("admin", "admin")]
