"""Extra dispatcher processes for `make run`, so the stages use more than one core.

One Python process runs one core's worth of interpreter at a time (the GIL); the stages are
CPU-bound Python, so `make run` starts `call-downloader dispatcher --function all` processes
beside the server process. They compete for the same RabbitMQ queues as the server's own
dispatcher (a queue hands each message to one consumer), so nothing is handled twice and
nothing changes for the events. Each child stops when the server dies (PR_SET_PDEATHSIG, see
`die_with_parent`) and is restarted, with a pause, if it exits on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("call_downloader.run")

RESTART_PAUSE_SECONDS = (1.0, 2.0, 5.0, 15.0, 30.0)


def default_count(configured: int | None, *, embedded: bool) -> int:
    """How many dispatcher processes to start beside the server: none in embedded mode
    (SQLite has one writer; its queues are polled in-process), else the configured number or
    one per core beyond the first."""
    if embedded:
        return 0
    if configured is not None:
        return max(0, configured)
    return max(0, (os.cpu_count() or 1) - 1)


def metrics_dir(data_dir: Path) -> Path:
    """PROMETHEUS_MULTIPROC_DIR for the server and its children (emptied at start: values of
    a previous run's processes must not be added to this run's)."""
    path = data_dir.resolve() / "metrics"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


PARENT_ENV = "CALL_DOWNLOADER_PARENT_PID"


def stop_with_parent() -> None:
    """SIGTERM to this process when its parent dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def die_with_parent() -> None:
    """In a dispatcher process started by `make run` (PARENT_ENV set): stop with the server.
    Set by the child itself once running (a preexec_fn would run between fork and exec in a
    parent full of threads, where a held lock can hang it)."""
    if not os.environ.get(PARENT_ENV):
        return
    stop_with_parent()
    if parent_gone():  # the server died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def parent_gone() -> bool:
    """In a dispatcher process started by `make run`: has the server gone (this process was
    reparented)? Checked every second as well, should the death signal not arrive."""
    expected = os.environ.get(PARENT_ENV)
    return bool(expected) and os.getppid() != int(expected or 0)


class DispatcherProcesses:
    """Starts `count` dispatcher processes and keeps them running until `stop()`."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.stopped = threading.Event()
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        return subprocess.Popen(
            [sys.executable, "-m", "call_downloader.cli", "dispatcher", "--function", "all"],
            env=env,
        )

    def start(self) -> None:
        if self.count == 0:
            return
        with self._lock:
            for i in range(self.count):
                self._procs[i] = self._spawn()
        self._thread = threading.Thread(
            target=self._supervise, name="dispatcher-procs", daemon=True
        )
        self._thread.start()

    def _supervise(self) -> None:
        failures = [0] * self.count
        while not self.stopped.wait(1.0):
            for i, proc in enumerate(self._procs):
                if proc is None or proc.poll() is None:
                    continue
                pause = RESTART_PAUSE_SECONDS[min(failures[i], len(RESTART_PAUSE_SECONDS) - 1)]
                log.warning(
                    "dispatcher process %d exited with %s; restarting in %.0f s",
                    proc.pid,
                    proc.returncode,
                    pause,
                )
                failures[i] += 1
                if self.stopped.wait(pause):
                    return
                with self._lock:
                    if not self.stopped.is_set():
                        self._procs[i] = self._spawn()

    def alive(self) -> bool:
        with self._lock:
            return all(p is not None and p.poll() is None for p in self._procs)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: each child finishes its in-flight events (as the server's own dispatcher
        does), then exits; SIGKILL after `timeout`."""
        self.stopped.set()
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
