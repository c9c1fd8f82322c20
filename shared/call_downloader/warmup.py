"""Cold start of a function: its main.py imports nothing heavy and its stage loads in the
background, so the container answers its first request (the readiness probe) early.

A function's main.py names its stage with `deferred_module(...)` and calls
`endpoints.install()`, which starts the warm-up in a thread: import the deferred modules, read
the settings, build the metrics, open the database engine and its first connection, build the
Redis client. /healthz answers meanwhile. The first use of a deferred module waits for the
warm-up to finish (it never races it) and then imports the module the ordinary way: a warm-up
step that failed (the database is down, ...) only means the request does that work itself and
reports the error as it always did.

functions-framework builds the app in gunicorn's arbiter, which then forks the worker that
serves. Threads do not survive a fork, and a fork in the middle of an import would leave the
worker with import locks nobody releases. So under the `functions-framework` command (without
--debug) the warm-up starts in each forked worker; anywhere else (tests, `make run`) at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("call_downloader.warmup")

_lock = threading.Lock()
_modules: list[str] = []  # what the deferred modules of this process name, in order
_done = threading.Event()
_started = False
_fork_hook = False
_warm_cache = False
_failures: dict[str, str] = {}  # step -> error of this process's warm-up (for logs and tests)


class DeferredModule:
    """Stands for a module until an attribute of it is used: then waits for the warm-up and
    imports it (an import error surfaces there, in the request)."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            wait()
            module = importlib.import_module(self._name)
            self._module = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "deferred"
        return f"<{state} module {self._name!r}>"


def deferred_module(name: str, *, warm_cache: bool = False) -> DeferredModule:
    """`name`, imported by the warm-up (once started) or on first use, whichever comes first.
    warm_cache: the function's work uses Redis (audio cache, token denylist, login throttle),
    so the warm-up builds the Redis client too (importing redis is not cheap)."""
    global _warm_cache
    with _lock:
        if name not in _modules:
            _modules.append(name)
        _warm_cache = _warm_cache or warm_cache
    return DeferredModule(name)


def wait() -> None:
    """Block until this process's warm-up has finished; at once if none was started."""
    if _started:
        _done.wait()


def failures() -> dict[str, str]:
    """The warm-up steps that failed in this process (step -> error)."""
    return dict(_failures)


def start() -> None:
    """Start the warm-up of this process, or of each worker gunicorn forks from it."""
    global _fork_hook
    if _forks_before_serving():
        with _lock:
            if not _fork_hook:
                os.register_at_fork(after_in_child=_start_in_forked_worker)
                _fork_hook = True
        return
    start_now()


def start_now() -> None:
    """Start the warm-up in this process (idempotent; cheap once started)."""
    global _started
    if _started:
        return
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_run, name="calldl-warmup", daemon=True).start()


def _forks_before_serving() -> bool:
    """Is this the `functions-framework` command, which serves from forked gunicorn workers?
    (With --debug it serves from this process: Flask's development server.)"""
    argv0 = sys.argv[0] if sys.argv else ""
    cli = Path(argv0).name == "functions-framework" or (
        Path(argv0).name == "__main__.py" and Path(argv0).parent.name == "functions_framework"
    )
    if not cli:
        return False
    debug = "--debug" in sys.argv[1:] or os.environ.get("DEBUG", "").strip().lower() in (
        "1",
        "true",
        "t",
        "yes",
        "y",
        "on",
    )
    return not debug


def _start_in_forked_worker() -> None:
    global _lock, _done, _started
    # Only the forking thread lives on in the child: fresh synchronisation objects.
    _lock = threading.Lock()
    _done = threading.Event()
    _started = False
    _failures.clear()
    start_now()


def _import_modules() -> None:
    for name in list(_modules):
        importlib.import_module(name)


def _settings() -> None:
    from call_downloader.config import get_settings
    from call_downloader.observability.logs import register_configured_secrets

    register_configured_secrets()  # before anything else may log (it ignores bad settings)
    get_settings()  # bad settings: a failed step


def _metrics() -> None:
    from call_downloader.observability.metrics import m

    m()


def _database() -> None:
    from sqlalchemy import text
    from sqlalchemy.orm import configure_mappers

    from call_downloader.db.engine import get_engine

    if "call_downloader.db.models" in sys.modules:
        configure_mappers()  # else the first query of a request does it
    with get_engine().connect() as conn:  # the pool keeps it for the first request
        conn.execute(text("SELECT 1"))


def _redis() -> None:
    from call_downloader.config import get_settings
    from call_downloader.storage.redis_client import get_redis

    if _warm_cache and get_settings().cache != "none":
        get_redis()  # the client only: connecting is the request's (Redis is a cache)


STEPS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("settings", _settings),
    ("import", _import_modules),
    ("metrics", _metrics),
    ("database", _database),
    ("redis", _redis),
)


def _run() -> None:
    started = time.perf_counter()
    timings: list[str] = []
    try:
        for step, fn in STEPS:
            at = time.perf_counter()
            try:
                fn()
            except Exception as exc:  # a request does the step again and reports the error
                _failures[step] = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("warm-up step %s failed: %s", step, _failures[step])
            timings.append(f"{step} {(time.perf_counter() - at) * 1000:.0f} ms")
    finally:
        _done.set()
    seconds = time.perf_counter() - started
    log.debug(
        "warm-up done (%s)", ", ".join(timings), extra={"duration_ms": round(seconds * 1000, 1)}
    )
