"""`make bench` runs end to end on tiny sizes: the benchmark scripts are not tests, and one of
them once broke unnoticed. Nothing here judges speed (no timing assertions): it checks that
every measure produced its numbers, the baselines ran beside the product, and the chart was
drawn. The 1 GB memory measure is left out (minutes of upload)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_every_quick_measure_beside_its_baseline(tmp_path):
    env = dict(os.environ, BENCH_ARTIFACTS=str(tmp_path))
    chart = tmp_path / "pipeline.png"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "bench" / "bench_main.py"),
            "--only",
            "pipeline,latency,relay,ingest,callbacks,coldstart,probe",
            "--calls",
            "12",
            "--rounds",
            "1",
            "--single-calls",
            "2",
            "--ingest-rounds",
            "1",
            "--coldstart-repeats",
            "1",
            "--chart",
            str(chart),
            "--label",
            "smoke",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())

    pipeline = results["pipeline"]
    for system in ("product", "baseline", "baseline_serial"):
        assert pipeline[system]["calls_per_s"] > 0, pipeline
        cpu = pipeline[system]["cpu_ms_per_call"]
        assert {"server", "postgres", "rabbitmq", "peers", "client", "other"} <= cpu.keys()
        assert cpu["server"] > 0, cpu
    # Twelve calls of the baselines may fit between two of the sampler's clock ticks on
    # PostgreSQL's side; the product's do not.
    assert pipeline["product"]["cpu_ms_per_call"]["postgres"] > 0, pipeline
    assert pipeline["ratio_vs_baseline"] > 0
    assert results["latency"]["product"]["p50_s"] > 0, results["latency"]
    for measure in ("relay", "ingest", "coldstart", "probe"):
        assert results[measure], (measure, run.stdout[-3000:])
    assert results["callbacks"]["statuses"] == [401] * 4, results["callbacks"]
    assert chart.stat().st_size > 10_000
    assert "Pipeline throughput" in run.stdout and "CPU ms/call" in run.stdout
