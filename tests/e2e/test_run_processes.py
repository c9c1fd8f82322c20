"""`make run` with dispatcher processes beside the server (RUN_DISPATCHER_PROCESSES, real
PostgreSQL, Redis and RabbitMQ): calls flow through them, /readyz reports them, one that dies
is restarted, they stop with the server, and /metrics sums every process's values."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from audio_fixtures import make_fixture
from e2e_support import start_server, stop_server, wait_for

pytestmark = pytest.mark.e2e


def children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:  # the process is gone
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids |= {int(x) for x in f.read().split()}
        except FileNotFoundError:  # that thread ended meanwhile
            continue
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def dispatcher_children(pid: int) -> set[int]:
    found = set()
    for kid in children(pid):
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if b"dispatcher" in f.read():
                    found.add(kid)
        except FileNotFoundError:  # exited meanwhile
            continue
    return found


def post_call(server, path, external_id: str) -> str:
    with path.open("rb") as audio:
        r = httpx.post(
            f"{server.url}/api/v1/calls",
            headers=server.headers(),
            files={"file": (path.name, audio, "audio/wav")},
            data={"external_id": external_id},
            timeout=30,
        )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def counter(server, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_dispatcher_processes_share_the_work_restart_and_stop_with_the_server(
    tmp_path, database_url, db, fake_ai, receiver
):
    server = start_server(
        tmp_path, database_url, fake_ai, receiver, "services", RUN_DISPATCHER_PROCESSES="2"
    )
    try:
        first = wait_for(lambda: len(dispatcher_children(server.proc.pid)) == 2 and 1)
        assert first
        kids = dispatcher_children(server.proc.pid)
        # What each check found is for signed-in staff (strangers get the status only).
        ready = httpx.get(f"{server.url}/readyz", headers=server.headers(), timeout=10).json()
        assert ready["checks"]["dispatcher_processes"] == "ok", ready

        path = make_fixture("wav_pcm16_8k")
        ids = [post_call(server, path, f"proc-{i}") for i in range(12)]
        for call_id in ids:
            wait_for(lambda c=call_id: server.call(c)["status"] == "delivered")
        assert sorted(receiver.payloads) == sorted(ids)
        assert all(len(receiver.deliveries[i]) == 1 for i in ids)  # one webhook-id each
        assert receiver.bad_signatures == 0
        # One /metrics for all processes: every call.received event counted once, whichever
        # process handled it.
        handled = wait_for(
            lambda: (
                (
                    n := counter(
                        server,
                        "calldl_events_handled_total",
                        function="analyze-duration",
                        outcome="ok",
                    )
                )
                >= 12
                and n
            )
        )
        assert handled == 12

        # A dispatcher process that dies is replaced.
        victim = min(kids)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim) or victim not in children(server.proc.pid))
        replaced = wait_for(
            lambda: (now := dispatcher_children(server.proc.pid)) - kids and len(now) == 2,
            timeout=30,
        )
        assert replaced
        assert wait_for(
            lambda: (
                httpx.get(f"{server.url}/readyz", headers=server.headers(), timeout=10).json()[
                    "checks"
                ]["dispatcher_processes"]
                == "ok"
            )
        )
        again = post_call(server, path, "proc-after-restart")
        wait_for(lambda: server.call(again)["status"] == "delivered")

        # The server killed outright: its dispatcher processes do not outlive it.
        survivors = dispatcher_children(server.proc.pid)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        deadline = time.monotonic() + 45  # SIGTERM, then at most the 25 s stop grace
        while any(alive(p) for p in survivors) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in survivors)
    finally:
        stop_server(server)
