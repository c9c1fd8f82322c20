"""Schemathesis against a real `make run` server (`call-downloader run`), with the document the
server itself serves: every operation, as an admin, bounded in examples and time.

Checks: no answer is a 5xx; every answer's status code, content type, headers and body match
the document; data the document forbids is refused; operations refuse missing or invalid
credentials (`ignored_auth`) and refuse the roles their `x-roles` leave out (our own check,
`role_is_enforced` in fuzz_hooks.py). Not `positive_data_acceptance`: it wants every request
the schema allows to be accepted, while several refusals depend on what no schema can state
(a cursor the client made up, bytes that are not audio, a URL outside the allow-lists, `hours`
together with `since`).

The server runs with EGRESS_ALLOWLIST=127.0.0.0/8 and no AUDIO_URL_ALLOWLIST: the URLs the
fuzzer makes up (audio_url, destination URLs) never leave loopback, and names are refused
without a DNS query. The seed is printed (FUZZ_SEED=<seed> repeats a run); FUZZ_EXAMPLES sets
the examples per operation, FUZZ_MODE=embedded the embedded mode (SQLite, no broker).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from audio_fixtures import make_fixture
from e2e_support import start_server, stop_server, wait_for
from fakes import FakeAI, Receiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HOOKS_DIR = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
# A hard stop well above a normal run (about two minutes on a 2-core machine): a run that
# has not finished by then is reported as a failure, with what it printed.
RUN_LIMIT_SECONDS = 900
PASSWORD = "fuzz-password-123"
LOGOUT_SESSIONS = 6
# "services" (PostgreSQL, Redis, RabbitMQ) in make test; FUZZ_MODE=embedded fuzzes the
# embedded mode by hand.
MODE = os.environ.get("FUZZ_MODE", "services")


def login(url: str, username: str, password: str) -> str:
    answer = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture
def fuzz_server(tmp_path, database_url, db):  # type: ignore[no-untyped-def]
    ai, receiver = FakeAI().start(), Receiver(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    receiver.start()
    server = start_server(
        tmp_path,
        database_url,
        ai,
        receiver,
        mode=MODE,
        EGRESS_ALLOWLIST="127.0.0.0/8",
        AUDIO_URL_ALLOWLIST="",
    )
    try:
        yield server
    finally:
        stop_server(server)
        ai.stop()
        receiver.stop()


def prepare(server) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Accounts of each role, their tokens, sessions for logout, and one delivered call (so
    the fuzzer finds real ids in the answers and reuses them)."""
    url = server.url
    admin = server.headers()
    roles: dict[str, str] = {}
    ids = [httpx.get(f"{url}/api/v1/auth/me", headers=admin, timeout=10).json()["id"]]
    for role in ("operator", "viewer", "source"):
        made = httpx.post(
            f"{url}/api/v1/auth/users",
            json={"username": f"fuzz-{role}", "role": role, "password": PASSWORD},
            headers=admin,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
        roles[role] = login(url, f"fuzz-{role}", PASSWORD)
    logout = [login(url, "fuzz-operator", PASSWORD) for _ in range(LOGOUT_SESSIONS)]
    with make_fixture("mp3_cbr").open("rb") as audio:
        posted = httpx.post(
            f"{url}/api/v1/calls",
            files={"file": ("seed.mp3", audio, "audio/mpeg")},
            data={"external_id": "fuzz-seed"},
            headers=admin,
            timeout=60,
        )
    assert posted.status_code == 202, posted.text
    wait_for(lambda: server.call(posted.json()["id"])["status"] == "delivered", timeout=90)
    return {
        "FUZZ_ADMIN_TOKEN": server.token(),
        "FUZZ_ROLE_TOKENS": json.dumps(roles),
        "FUZZ_LOGOUT_TOKENS": ",".join(logout),
        "FUZZ_PROTECTED_USERS": ",".join(ids),
    }


def summary(output: str) -> str:
    """The run's closing block (from SUMMARY on), or its tail."""
    at = output.find("SUMMARY")
    return output[output.rfind("\n", 0, at) + 1 :] if at >= 0 else output[-3000:]


def test_the_api_holds_its_contract_under_fuzzing(fuzz_server, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    tokens = prepare(fuzz_server)
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**31))
    command = [
        str(ROOT / ".venv/bin/schemathesis"),
        "--no-color",
        "run",
        f"{fuzz_server.url}/api/v1/openapi.json",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={EXAMPLES}",
        f"--seed={seed}",
        "--workers=2",
        "--exclude-checks=positive_data_acceptance",
        "--generation-with-security-parameters=false",
        "--generation-database=none",
        "--request-timeout=30",
        "--warnings=off",
    ]
    env = {
        **os.environ,
        **tokens,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": str(HOOKS_DIR),
    }
    started = time.monotonic()
    try:
        run = subprocess.run(
            command,
            cwd=tmp_path,  # its cache folder goes there
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_SECONDS,
            check=False,
        )
        output = run.stdout + run.stderr
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "")
        )
        pytest.fail(f"Schemathesis (seed {seed}) ran over {RUN_LIMIT_SECONDS} s:\n{output[-5000:]}")
    took = time.monotonic() - started
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / f"schemathesis-{seed}.log").write_text(output)

    with capsys.disabled():
        sys.stdout.write(
            f"\n[schemathesis] seed {seed}, {EXAMPLES} examples per operation, {took:.0f} s "
            f"(FUZZ_SEED={seed} repeats it; whole output in test-artifacts/)\n"
            + summary(output)
            + "\n"
        )
    assert run.returncode == 0, f"Schemathesis found failures (seed {seed}):\n{output[-20000:]}"
    document = httpx.get(f"{fuzz_server.url}/api/v1/openapi.json", timeout=10).json()
    operations = sum(
        1 for item in document["paths"].values() for method in item if method != "parameters"
    )
    selected = re.search(r"Selected:\s+(\d+)/(\d+)", output)
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert selected and tested, "no summary in the output"
    # Every operation but the document's own (Schemathesis leaves out the URL it loaded).
    assert int(selected[1]) == int(selected[2]) == int(tested[1]) == operations - 1
    assert httpx.get(f"{fuzz_server.url}/readyz", timeout=10).status_code == 200
    assert "unhandled error" not in fuzz_server.log()
