"""Pipeline throughput and latency, upload to the destination's receipt, against the hand-wired
pipeline; and single-call latency on an idle system.

A run posts `calls` small WAV recordings from `concurrency` client threads (keep-alive
connections), then waits until the destination has every one. Throughput = calls / (last
receipt - first upload start); latency of a call = its receipt - its upload start (both
time.monotonic(), one clock for every process on Linux).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from bench_common import (
    CPU_GROUPS,
    CpuSampler,
    cpu_seconds,
    log,
    median,
    multipart,
    percentile,
    ratio,
    wav_bytes,
)

SMALL_AUDIO_BYTES = 32_000  # 2 s of 8 kHz 16-bit mono


class Target:
    """Where to post a call and how to read its id back; `pid` is the serving process,
    `database` the PostgreSQL database it works in."""

    def __init__(
        self, name: str, url: str, headers: dict[str, str], pid: int, database: str
    ) -> None:
        self.name = name
        self.pid = pid
        self.database = database
        self.url = url
        self.headers = headers
        body, ctype = multipart({}, wav_bytes(SMALL_AUDIO_BYTES, seed=5))
        self.body = body
        self.headers = {"Content-Type": ctype, **headers}

    def post(self, client: httpx.Client) -> str:
        response = client.post(self.url, content=self.body, headers=self.headers)
        if response.status_code != 202:
            raise RuntimeError(f"{self.name}: {response.status_code} {response.text[:300]}")
        return str(response.json()["id"])


def product_target(ctx: Any) -> Target:
    return Target(
        "product",
        ctx.product.url + "/api/v1/calls",
        {"Authorization": f"Bearer {ctx.token}"},
        ctx.product.pid,
        ctx.product.info["database"],
    )


def baseline_target(name: str, proc: Any) -> Target:
    return Target(name, proc.url + "/calls", {}, proc.pid, proc.info["database"])


def load(ctx: Any, target: Target, calls: int, concurrency: int) -> dict[str, Any]:
    starts: dict[str, float] = {}
    lock = threading.Lock()
    counter = iter(range(calls))
    cpu_before = cpu_seconds(target.pid)
    sampler = CpuSampler(target.database, target.pid, ctx.peers.proc.pid)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with sampler, httpx.Client(timeout=120, limits=limits) as client:

        def worker() -> None:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                started = time.monotonic()
                call_id = target.post(client)
                with lock:
                    starts[call_id] = started

        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(worker) for _ in range(concurrency)]:
                f.result()
        receipts = ctx.peers.wait_receipts(set(starts), timeout=max(120.0, calls * 1.0))
        cpu = cpu_seconds(target.pid) - cpu_before
    latencies = [receipts[i] - starts[i] for i in starts]
    span = max(receipts[i] for i in starts) - min(starts.values())
    return {
        "calls": calls,
        "concurrency": concurrency,
        "seconds": span,
        "calls_per_s": calls / span,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        # CPU the serving process spent per call (its own threads only; PostgreSQL and
        # RabbitMQ are separate processes).
        "server_cpu_ms_per_call": cpu / calls * 1000,
        # The whole machine's CPU per call by process group (CPU_GROUPS, sampled from /proc),
        # with cores_busy: busy CPU seconds / wall seconds, out of `cpus`.
        **sampler.report(calls),
    }


def cpu_line(result: dict[str, Any]) -> str:
    """'cpu/call: server 30.1, postgres 12.0, ... ms; 1.8 of 2 cores busy'."""
    groups = ", ".join(f"{g} {result['cpu_ms_per_call'][g]:.1f}" for g in CPU_GROUPS)
    line = f"cpu/call: {groups} ms; {result['cores_busy']:.1f} of {result['cpus']} cores busy"
    if result.get("cores_steal"):
        line += f" ({result['cores_steal']:.2f} stolen by the hypervisor)"
    return line


def single(ctx: Any, target: Target, calls: int, cpu: list[float] | None = None) -> list[float]:
    """One call in flight at a time, each after the previous one arrived; appends the serving
    process's CPU seconds per call to `cpu`."""
    latencies = []
    cpu_before = cpu_seconds(target.pid)
    with httpx.Client(timeout=120) as client:
        for _ in range(calls):
            started = time.monotonic()
            call_id = target.post(client)
            latencies.append(ctx.peers.wait_one(call_id) - started)
            time.sleep(0.05)  # idle again: nothing of the previous call still running
    if cpu is not None:
        cpu.append((cpu_seconds(target.pid) - cpu_before) / calls)
    return latencies


def _systems(ctx: Any) -> list[tuple[str, Target]]:
    return [
        ("product", product_target(ctx)),
        ("baseline_serial", baseline_target("baseline_serial", ctx.baseline_serial)),
        ("baseline", baseline_target("baseline", ctx.baseline)),
    ]


def run_throughput(
    ctx: Any,
    calls: int = 300,
    concurrency: int = 8,
    rounds: int = 2,
    profile: Callable | None = None,
) -> dict[str, Any]:
    systems = _systems(ctx)
    for name, target in systems:  # warm-up: pools, caches, code paths
        load(ctx, target, 20, concurrency)
        log(f"pipeline warm-up done: {name}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in systems}
    for r in range(rounds):
        for name, target in systems:
            ctx.peers.reset()
            if profile is not None and name == "product" and r == 0:
                with profile("pipeline"):
                    result = load(ctx, target, calls, concurrency)
            else:
                result = load(ctx, target, calls, concurrency)
            runs[name].append(result)
            log(
                f"pipeline round {r + 1} {name}: {result['calls_per_s']:.1f} calls/s, "
                f"p50 {result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms, "
                f"server CPU {result['server_cpu_ms_per_call']:.1f} ms/call"
            )
            log(f"pipeline round {r + 1} {name} {cpu_line(result)}")
    summary: dict[str, Any] = {"calls": calls, "concurrency": concurrency, "rounds": rounds}
    for name, results in runs.items():
        summary[name] = {
            "calls_per_s": median([x["calls_per_s"] for x in results]),
            "p50_s": median([x["p50_s"] for x in results]),
            "p99_s": median([x["p99_s"] for x in results]),
            "server_cpu_ms_per_call": median([x["server_cpu_ms_per_call"] for x in results]),
            "cpu_ms_per_call": {
                g: median([x["cpu_ms_per_call"][g] for x in results]) for g in CPU_GROUPS
            },
            "cores_busy": median([x["cores_busy"] for x in results]),
            "cpus": results[0]["cpus"],
            "runs": results,
        }
    for name in ("baseline", "baseline_serial"):
        summary[f"ratio_vs_{name}"] = ratio(
            summary["product"]["calls_per_s"], summary[name]["calls_per_s"]
        )
    summary["target_ratio"] = 1.0
    return summary


def run_single(ctx: Any, calls: int = 25) -> dict[str, Any]:
    systems = _systems(ctx)
    samples: dict[str, list[float]] = {name: [] for name, _ in systems}
    cpu: dict[str, list[float]] = {name: [] for name, _ in systems}
    for name, target in systems:
        single(ctx, target, 3)  # warm-up
    # Interleaved in blocks so a noisy moment hits every system alike.
    block = 5
    for _ in range(0, calls, block):
        for name, target in systems:
            samples[name] += single(ctx, target, block, cpu[name])
    result: dict[str, Any] = {"calls": len(samples["product"])}
    for name, values in samples.items():
        result[name] = {
            "p50_s": median(values),
            "p90_s": percentile(values, 90),
            "server_cpu_ms_per_call": median(cpu[name]) * 1000,
        }
    for name in ("baseline", "baseline_serial"):
        result[f"ratio_vs_{name}"] = ratio(result["product"]["p50_s"], result[name]["p50_s"])
    log(
        "single-call p50: "
        + ", ".join(
            f"{n} {result[n]['p50_s'] * 1000:.0f} ms "
            f"(server CPU {result[n]['server_cpu_ms_per_call']:.1f} ms/call)"
            for n, _ in systems
        )
    )
    return result
