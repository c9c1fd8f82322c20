"""Cold start: for each function, process start to its first answered requests, the way a
container starts it (`functions-framework --target ... --source main.py`, gunicorn, the
function's folder as working directory), against a functions-framework hello-world.

Two times per start, both from the moment the process is spawned:
- ready: the first answered request. Ours: GET /healthz (what a readiness probe asks);
  the hello-world's: its own request (GET / for HTTP, a CloudEvent for the event one).
- first work: the first request doing the function's real job, sent right after ready:
  ingest takes a small upload (202), calls lists calls, auth answers /me; the CloudEvent
  functions handle an event for an unknown call (reads and writes PostgreSQL, 200).
HTTP functions are compared with the HTTP hello-world, CloudEvent functions with the
CloudEvent one. Starts are repeated in rounds (both hello-worlds, then each function once) and the
medians kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import bench_common
import httpx
from bench_common import (
    ARTIFACTS,
    ROOT,
    VENV_BIN,
    base_env,
    free_port,
    log,
    median,
    multipart,
    ratio,
    wav_bytes,
)
from bench_pipeline import SMALL_AUDIO_BYTES

HELLO = """import functions_framework


@functions_framework.http
def hello(request):
    return "Hello, World!"


@functions_framework.cloud_event
def hello_event(cloud_event):
    return None
"""

# folder -> (target, signature type, CloudEvent type for event functions)
FUNCTIONS: dict[str, tuple[str, str, str | None]] = {
    "ingest": ("ingest", "http", None),
    "calls": ("calls", "http", None),
    "auth": ("auth", "http", None),
    "analyze-duration": ("analyze_duration", "cloudevent", "call.received.v1"),
    "call-ai": ("call_ai", "cloudevent", "call.analyzed.v1"),
    "deliver": ("deliver", "cloudevent", "call.processed.v1"),
}


def _event(type_suffix: str) -> tuple[dict[str, str], bytes]:
    subject = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/bench",
        "ce-type": f"dev.calldownloader.{type_suffix}",
        "ce-subject": subject,
        "Content-Type": "application/json",
    }
    body = json.dumps({"call_id": subject, "run": 1, "result_version": 1}).encode()
    return headers, body


def _answered(client: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response | None:
    try:
        return client.request(method, url, **kw)
    except httpx.TransportError:
        return None


def _start_once(
    folder: Path,
    target: str,
    signature: str,
    env: dict[str, str],
    ready: tuple[str, str, dict],
    work: tuple[str, str, dict] | None,
) -> tuple[float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = ARTIFACTS / f"coldstart-{folder.name}.log"
    started = time.monotonic()
    popen = subprocess.Popen(
        [
            str(VENV_BIN / "functions-framework"),
            f"--target={target}",
            "--source=main.py",
            f"--signature-type={signature}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        cwd=folder,
        env={**env, "PORT": str(port)},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # gunicorn forks a worker: stop the whole group afterwards
    )
    try:
        with httpx.Client(timeout=30) as client:
            method, path, kw = ready
            while True:
                if popen.poll() is not None:
                    raise RuntimeError(f"{folder.name} exited: {log_path.read_text()[-2000:]}")
                response = _answered(client, method, base + path, **kw)
                if response is not None:
                    if response.status_code // 100 != 2:
                        raise RuntimeError(f"{folder.name} {path}: {response.status_code}")
                    break
                time.sleep(0.005)
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"{folder.name} did not answer in 60 s")
            ready_at = time.monotonic() - started
            if work is None:
                return ready_at, ready_at
            method, path, kw = work
            response = client.request(method, base + path, **kw)
            if response.status_code // 100 != 2:
                raise RuntimeError(
                    f"{folder.name} {path}: {response.status_code} {response.text[:300]}"
                )
            return ready_at, time.monotonic() - started
    finally:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.wait(5)


def run(ctx: Any, repeats: int = 3) -> dict[str, Any]:
    hello_dir = ARTIFACTS / "hello"
    hello_dir.mkdir(parents=True, exist_ok=True)
    (hello_dir / "main.py").write_text(HELLO)
    env = base_env(
        ctx.database_url,
        ctx.namespace,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        THREADS="8",
        WORKERS="1",
        AI_URL=f"{ctx.peers.url}/analyze",
        DELIVERY_URL=f"{ctx.peers.url}/hook",
        DATA_DIR=str(ARTIFACTS / "data-coldstart"),
    )
    # Exactly the container's import path: the function folder (and the library installed).
    env.pop("PYTHONPATH", None)
    tree = bench_common.PRODUCT_TREE or ROOT
    if bench_common.PRODUCT_TREE:
        env["PYTHONPATH"] = str(tree / "shared")
    auth = {"Authorization": f"Bearer {ctx.token}"}
    upload, ctype = multipart({}, wav_bytes(SMALL_AUDIO_BYTES, seed=9))

    def work_for(folder: str, event_type: str | None) -> tuple[str, str, dict]:
        if event_type is not None:
            headers, body = _event(event_type)
            return ("POST", "/", {"headers": headers, "content": body})
        if folder == "ingest":
            return (
                "POST",
                "/api/v1/calls",
                {"headers": {**auth, "Content-Type": ctype}, "content": upload},
            )
        if folder == "calls":
            return ("GET", "/api/v1/calls?limit=1", {"headers": auth})
        return ("GET", "/api/v1/auth/me", {"headers": auth})

    results: dict[str, Any] = {"repeats": repeats, "functions": {}}
    hello_samples: dict[str, list[float]] = {"http": [], "cloudevent": []}
    ready_samples: dict[str, list[float]] = {folder: [] for folder in FUNCTIONS}
    work_samples: dict[str, list[float]] = {folder: [] for folder in FUNCTIONS}
    # Round by round (each hello-world, then each function once), so a noisy stretch of the
    # shared machine hits the baseline and the functions alike.
    for _ in range(repeats):
        for kind in ("http", "cloudevent"):
            if kind == "http":
                ready = ("GET", "/", {})
                t = _start_once(hello_dir, "hello", "http", env, ready, None)
            else:
                headers, body = _event("bench.hello.v1")
                ready = ("POST", "/", {"headers": headers, "content": body})
                t = _start_once(hello_dir, "hello_event", "cloudevent", env, ready, None)
            hello_samples[kind].append(t[0])
        for folder, (target, signature, event_type) in FUNCTIONS.items():
            ready_at, work_at = _start_once(
                tree / "functions" / folder,
                target,
                signature,
                env,
                ("GET", "/healthz", {}),
                work_for(folder, event_type),
            )
            ready_samples[folder].append(ready_at)
            work_samples[folder].append(work_at)
    hello: dict[str, dict[str, Any]] = {}
    for kind, samples in hello_samples.items():
        hello[kind] = {"ready_s": median(samples), "samples": samples}
        log(f"cold start hello-world ({kind}): {hello[kind]['ready_s'] * 1000:.0f} ms")
    results["hello"] = hello
    for folder, (_target, signature, _event_type) in FUNCTIONS.items():
        ref = hello[signature]["ready_s"]
        entry = {
            "ready_s": median(ready_samples[folder]),
            "first_work_s": median(work_samples[folder]),
            "ready_samples": ready_samples[folder],
            "work_samples": work_samples[folder],
        }
        entry["ready_ratio"] = ratio(entry["ready_s"], ref)
        entry["first_work_ratio"] = ratio(entry["first_work_s"], ref)
        results["functions"][folder] = entry
        log(
            f"cold start {folder}: ready {entry['ready_s'] * 1000:.0f} ms "
            f"({entry['ready_ratio']:.2f}x), first work {entry['first_work_s'] * 1000:.0f} ms "
            f"({entry['first_work_ratio']:.2f}x)"
        )
    results["target_ratio"] = 1.5
    return results
