"""`make bench`: the product measured beside raw baselines in the same run.

    .venv/bin/python tests/bench/bench_main.py
        [--only ingest,pipeline,latency,relay,memory,callbacks,coldstart,probe]
        [--calls 300] [--rounds 2] [--profile] [--chart PATH] [--label NAME]

Prints a table and writes test-artifacts/bench/results-<time>.json (and latest.json). The
machine is shared and noisy: the ratios are the result, absolute numbers are context.
Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (infra/bench/run.sh starts what is down).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_common
from bench_common import (
    ARTIFACTS,
    ROOT,
    Peers,
    Proc,
    admin_token,
    cleanup_rabbitmq,
    cleanup_redis,
    create_database,
    drop_database,
    log,
    migrate,
    start_baseline,
    start_peers,
    start_product,
    write_json,
)

ALL = ("ingest", "pipeline", "latency", "relay", "memory", "callbacks", "coldstart", "probe")


@dataclass
class Ctx:
    namespace: str
    database_url: str
    peers: Peers
    product: Proc
    token: str
    baseline: Proc
    baseline_serial: Proc


def profiler(pid: int, label: str) -> Any:
    """py-spy attached to the product server while the block runs (collapsed stacks)."""

    @contextmanager
    def attach(name: str) -> Any:
        out = ARTIFACTS / f"profile-{label}-{name}"
        # --gil: only the thread holding the GIL, i.e. where the server's Python CPU goes;
        # --nonblocking: sampling does not pause the server (it would skew the run).
        procs = [
            subprocess.Popen(
                [
                    os.path.join(os.path.dirname(sys.executable), "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--gil",
                    "--format",
                    "raw",
                    "--output",
                    f"{out}.txt",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        ]
        time.sleep(0.5)  # attached before the load starts
        try:
            yield
        finally:
            for p in procs:
                p.send_signal(2)  # SIGINT: py-spy writes its output and exits
            for p in procs:
                p.wait(60)
            log(f"profile (collapsed stacks) written to {out}.txt")

    return attach


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    if "ingest" in results:
        r = results["ingest"]
        rows.append(
            (
                "Ingest, 20 MB uploads",
                f"{r['product_mb_s']:.1f} MB/s",
                f"{r['baseline_mb_s']:.1f} MB/s (bare streaming endpoint)",
                f"{r['ratio']:.2f}x",
                ">= 0.8x",
            )
        )
    if "pipeline" in results:
        r = results["pipeline"]
        for key, label in (("baseline", "same concurrency"), ("baseline_serial", "one at a time")):
            rows.append(
                (
                    f"Pipeline throughput, {r['calls']} calls",
                    f"{r['product']['calls_per_s']:.1f} calls/s",
                    f"{r[key]['calls_per_s']:.1f} calls/s (hand-wired, {label})",
                    f"{r['ratio_vs_' + key]:.2f}x",
                    ">= 1.0x",
                )
            )
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"Pipeline latency {q} under load",
                    fmt_ms(r["product"][f"{q}_s"]),
                    f"{fmt_ms(r['baseline'][f'{q}_s'])} / "
                    f"{fmt_ms(r['baseline_serial'][f'{q}_s'])} (same conc. / one at a time)",
                    f"{r['product'][f'{q}_s'] / r['baseline'][f'{q}_s']:.2f}x",
                    "",
                )
            )
    if "latency" in results:
        r = results["latency"]
        rows.append(
            (
                "Single call, idle, p50",
                fmt_ms(r["product"]["p50_s"]),
                f"{fmt_ms(r['baseline']['p50_s'])} / {fmt_ms(r['baseline_serial']['p50_s'])}",
                f"{r['ratio_vs_baseline']:.2f}x",
                "",
            )
        )
    if "relay" in results:
        r = results["relay"]
        rows.append(
            (
                f"Outbox relay, backlog of {r['events']}",
                f"{r['product_events_s']:.0f} events/s",
                f"{r['baseline_events_s']:.0f} events/s (raw publisher, a confirm each, no DB)",
                f"{r['ratio']:.2f}x",
                "",
            )
        )
    if "memory" in results:
        r = results["memory"]
        rows.append(
            (
                "Peak RSS growth, 1 GB upload",
                f"{r['product_rss_growth_mb']:.1f} MB",
                f"{r['baseline_rss_growth_mb']:.1f} MB (bare endpoint)",
                "",
                "< 100 MB",
            )
        )
        rows.append(
            (
                "  ... then through its stages",
                f"{r['product_stages_rss_growth_mb']:.1f} MB",
                "",
                "",
                "",
            )
        )
    if "callbacks" in results:
        r = results["callbacks"]
        rows.append(
            (
                f"Peak RSS growth, {r['callbacks']} bad-token AI callbacks at once",
                f"{r['product_rss_growth_mb']:.1f} MB",
                f"{r['body_bytes'] / 1e6:.0f} MB JSON each, answered {r['statuses']}",
                "",
                "",
            )
        )
    if "coldstart" in results:
        r = results["coldstart"]
        for name, e in r["functions"].items():
            rows.append(
                (
                    f"Cold start {name}",
                    f"{fmt_ms(e['ready_s'])} ready, {fmt_ms(e['first_work_s'])} first work",
                    "hello-world "
                    + fmt_ms(
                        r["hello"]["http" if name in ("ingest", "calls", "auth") else "cloudevent"][
                            "ready_s"
                        ]
                    ),
                    f"{e['ready_ratio']:.2f}x / {e['first_work_ratio']:.2f}x",
                    "<= 1.5x",
                )
            )
    if "probe" in results:
        r = results["probe"]
        rows.append(
            (
                f"Duration probing, {r['files']} mixed files",
                f"{r['product_files_s']:.0f} files/s",
                f"mutagen.File {r['mutagen_files_s']:.0f}, ffprobe {r['ffprobe_files_s']:.0f}",
                f"{r['ratio_vs_mutagen']:.2f}x / {r['ratio_vs_ffprobe']:.1f}x",
                "",
            )
        )
        acc = r["accurate"]
        rows.append(
            (
                "  accurate to a full decode",
                f"{acc['product']}/{r['files']}",
                f"mutagen {acc['mutagen']}/{r['files']}, ffprobe {acc['ffprobe']}/{r['files']}",
                "",
                "",
            )
        )
        for fmt, row in r.get("accurate_by_format", {}).items():
            rows.append(
                (
                    f"    {fmt}",
                    f"{row['product']}/{row['files']}",
                    f"mutagen {row['mutagen']}/{row['files']}, "
                    f"ffprobe {row['ffprobe']}/{row['files']}",
                    "",
                    "",
                )
            )
    head = ("Measure", "Call Downloader", "Baseline", "Ratio", "Target")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(5)]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [head, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    cpu = cpu_table(results)
    return "\n".join(lines) + (f"\n\n{cpu}" if cpu else "")


def cpu_table(results: dict[str, Any]) -> str:
    """The pipeline runs' CPU per call by process group, one row per system (medians)."""
    r = results.get("pipeline")
    if not r or "cpu_ms_per_call" not in r.get("product", {}):
        return ""
    from bench_common import CPU_GROUPS

    head = ("CPU ms/call under load", *CPU_GROUPS, "total", "cores busy")
    rows = []
    for name in ("product", "baseline_serial", "baseline"):
        groups = r[name]["cpu_ms_per_call"]
        rows.append(
            (
                name,
                *(f"{groups[g]:.1f}" for g in CPU_GROUPS),
                f"{sum(groups.values()):.1f}",
                f"{r[name]['cores_busy']:.1f} of {r[name]['cpus']}",
            )
        )
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = [
        " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated: " + ",".join(ALL))
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingest-rounds", type=int, default=5)
    parser.add_argument("--single-calls", type=int, default=25)
    parser.add_argument("--coldstart-repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="py-spy the product server")
    parser.add_argument("--chart", default=str(ARTIFACTS / "pipeline.png"))
    parser.add_argument("--label", default="", help="tag for the results file and profiles")
    parser.add_argument(
        "--product-tree",
        default=None,
        help="run the product from another checkout's shared/ and functions/ (A/B of a change)",
    )
    args = parser.parse_args()
    if args.product_tree:
        tree = Path(args.product_tree).resolve()
        if not (tree / "shared" / "call_downloader").is_dir():
            parser.error(f"{tree} has no shared/call_downloader")
        bench_common.PRODUCT_TREE = tree
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(selected) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    namespace = f"cdbench_{run_id}"
    product_db, baseline_db = f"cd_bench_{run_id}", f"cd_bench_{run_id}_raw"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "label": args.label,
        "args": vars(args),
    }
    started = time.monotonic()
    needs_servers = set(selected) & {
        "ingest",
        "pipeline",
        "latency",
        "relay",
        "memory",
        "callbacks",
        "coldstart",
    }
    with ExitStack() as stack:
        ctx: Ctx | None = None
        if needs_servers:
            log(f"run {run_id}: databases, peers, product server and baselines")
            url = create_database(product_db)
            stack.callback(drop_database, product_db)
            stack.callback(cleanup_redis, namespace)
            stack.callback(cleanup_rabbitmq, namespace)
            migrate(url)
            raw_url = create_database(baseline_db)
            stack.callback(drop_database, baseline_db)
            peers_proc = start_peers()
            stack.callback(peers_proc.stop)
            product = start_product(url, namespace, peers_proc.url)
            stack.callback(product.stop)
            baseline = start_baseline(raw_url, namespace + "_c", peers_proc.url, args.concurrency)
            stack.callback(baseline.stop)
            serial = start_baseline(raw_url, namespace + "_s", peers_proc.url, 1)
            stack.callback(serial.stop)
            ctx = Ctx(
                namespace,
                url,
                Peers(peers_proc),
                product,
                admin_token(product.url),
                baseline,
                serial,
            )
        prof = profiler(ctx.product.pid, args.label or run_id) if (ctx and args.profile) else None
        if "probe" in selected:
            sys.path.insert(0, str(ROOT / "tests"))  # audio_fixtures
            import bench_probe

            results["probe"] = bench_probe.run()
        if "latency" in selected:
            import bench_pipeline

            results["latency"] = bench_pipeline.run_single(ctx, args.single_calls)
        if "pipeline" in selected:
            import bench_pipeline

            results["pipeline"] = bench_pipeline.run_throughput(
                ctx, args.calls, args.concurrency, args.rounds, prof
            )
        if "relay" in selected:
            import bench_relay

            results["relay"] = bench_relay.run(ctx)
        if "ingest" in selected:
            import bench_ingest

            results["ingest"] = bench_ingest.run(ctx, args.ingest_rounds)
        if "coldstart" in selected:
            import bench_coldstart

            results["coldstart"] = bench_coldstart.run(ctx, args.coldstart_repeats)
        if "memory" in selected:
            import bench_memory

            results["memory"] = bench_memory.run(ctx)
        if "callbacks" in selected:
            import bench_memory

            results["callbacks"] = bench_memory.run_bad_callbacks(ctx)
        log("stopping servers, dropping the run's databases and broker names")
    results["seconds"] = round(time.monotonic() - started, 1)
    results["load_avg_at_end"] = os.getloadavg()
    print()
    print(table(results))
    load = results["machine"]["load_avg_at_start"]
    print(f"\n({results['seconds']} s; load average at start {load})")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = f"-{args.label}" if args.label else ""
    write_json(ARTIFACTS / f"results-{stamp}{tag}.json", results)
    write_json(ARTIFACTS / "latest.json", results)
    import bench_chart

    chart = bench_chart.draw(results, Path(args.chart))
    print(f"results: {ARTIFACTS / 'latest.json'}" + (f"; chart: {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
