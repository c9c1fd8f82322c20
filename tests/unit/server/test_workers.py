"""How many dispatcher processes `make run` starts beside the server, and its metrics folder."""

from __future__ import annotations

import pytest

from call_downloader.server import workers


@pytest.mark.parametrize(
    ("configured", "embedded", "cores", "expected"),
    [
        (None, False, 2, 1),  # one per core beyond the first
        (None, False, 8, 7),
        (None, False, 1, 0),
        (3, False, 2, 3),  # the setting wins
        (0, False, 8, 0),
        (-2, False, 8, 0),
        (None, True, 8, 0),  # embedded mode: always one process
        (4, True, 8, 0),
    ],
)
def test_default_count(monkeypatch, configured, embedded, cores, expected):
    monkeypatch.setattr(workers.os, "cpu_count", lambda: cores)
    assert workers.default_count(configured, embedded=embedded) == expected


def test_metrics_dir_forgets_a_previous_runs_values(tmp_path):
    first = workers.metrics_dir(tmp_path)
    (first / "counter_123.db").write_bytes(b"old")
    (first / "keep.txt").write_text("not a metrics file")
    second = workers.metrics_dir(tmp_path)
    assert second == first == (tmp_path / "metrics").resolve()
    assert sorted(p.name for p in second.iterdir()) == ["keep.txt"]


def test_setting_is_read_from_the_environment(monkeypatch):
    from call_downloader.config import get_settings, reset_settings

    monkeypatch.setenv("RUN_DISPATCHER_PROCESSES", "3")
    reset_settings()
    assert get_settings().run_dispatcher_processes == 3
    monkeypatch.delenv("RUN_DISPATCHER_PROCESSES")
    reset_settings()
    assert get_settings().run_dispatcher_processes is None


def _child(env_value: str | None) -> int:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != workers.PARENT_ENV}
    if env_value is not None:
        env[workers.PARENT_ENV] = env_value
    code = "from call_downloader.server.workers import die_with_parent; die_with_parent()"
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode


def test_a_dispatcher_process_whose_server_is_already_gone_stops_at_once():
    import os
    import signal

    assert _child(str(os.getpid())) == 0  # its parent is the one named: runs on
    assert _child("1") == -signal.SIGTERM  # named parent gone (reparented): stops
    assert _child(None) == 0  # not started by `make run`: nothing to do


def test_parent_gone_only_for_a_process_make_run_started(monkeypatch):
    import os

    monkeypatch.delenv(workers.PARENT_ENV, raising=False)
    assert not workers.parent_gone()  # a container's dispatcher has no such parent
    monkeypatch.setenv(workers.PARENT_ENV, str(os.getppid()))
    assert not workers.parent_gone()
    monkeypatch.setenv(workers.PARENT_ENV, str(os.getppid() + 1))
    assert workers.parent_gone()


def test_an_orphaned_dispatcher_process_exits_even_if_its_main_thread_is_stuck() -> None:
    """The backstop of `make run`'s dispatcher processes: a thread of their own ends the
    process once the server is gone (here: a parent pid that is not this process's parent),
    while the main thread sleeps on."""
    import subprocess
    import sys

    script = (
        "import os, time\n"
        "from call_downloader import cli\n"
        "from call_downloader.server.workers import PARENT_ENV\n"
        "os.environ[PARENT_ENV] = str(os.getppid() + 1000000)\n"
        "cli.STOP_GRACE_SECONDS = 0.1\n"
        "cli._exit_when_orphaned()\n"
        "time.sleep(120)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == 1
