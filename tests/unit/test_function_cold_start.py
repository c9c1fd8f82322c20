"""Cold start: a function's main.py and its /healthz import nothing heavy (the stage loads in the
warm-up thread), and under the functions-framework command the warm-up runs in the forked
worker, never in the arbiter that forks it. Each check runs in a fresh interpreter, the way a
container starts (the function's folder as working directory, main.py loaded from source)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "ingest": "ingest",
    "calls": "calls",
    "auth": "auth",
    "analyze-duration": "analyze_duration",
    "call-ai": "call_ai",
    "deliver": "deliver",
}
HEAVY = ("sqlalchemy", "pydantic_settings", "redis", "jose", "httpx", "call_downloader.config")


def _run(folder: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "shared")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "functions" / folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_importing_main_imports_nothing_heavy(folder):
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("main", "main.py")
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
assert callable(getattr(module, {FUNCTIONS[folder]!r}))
loaded = [m for m in {HEAVY!r} if m in sys.modules]
assert not loaded, loaded
print("ok")
"""
    result = _run(folder, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_healthz_answers_without_the_stage(folder):
    """The app functions-framework builds answers /healthz before (without) any warm-up."""
    code = f"""
import sys
from call_downloader import warmup
warmup.start = warmup.start_now = lambda: None  # no warm-up: what /healthz itself needs
import functions_framework
app = functions_framework.create_app({FUNCTIONS[folder]!r}, "main.py")
response = app.test_client().get("/healthz")
assert response.status_code == 200, response.status_code
loaded = [m for m in {HEAVY!r} if m in sys.modules]
assert not loaded, loaded
print("ok")
"""
    result = _run(folder, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_cli_warms_up_in_the_forked_worker_not_in_the_arbiter():
    """Run as the `functions-framework` command: installing starts nothing in this process
    (a fork in the middle of an import would hang the worker); the forked child warms up."""
    code = """
import os, sys, threading
sys.argv = ["/opt/venv/bin/functions-framework", "--target=deliver", "--source=main.py"]
import functions_framework
from call_downloader import warmup
app = functions_framework.create_app("deliver", "main.py", "cloudevent")
assert not warmup._started
assert not [t for t in threading.enumerate() if t.name == "calldl-warmup"]
assert "call_downloader.pipeline.deliver" not in sys.modules
pid = os.fork()
if pid == 0:
    code = 3
    try:
        assert warmup._started
        warmup.wait()
        code = 0 if "call_downloader.pipeline.deliver" in sys.modules else 4
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert not warmup._started  # the arbiter stays lean
assert "call_downloader.pipeline.deliver" not in sys.modules
print("ok")
"""
    result = _run("deliver", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
