#!/usr/bin/env bash
# `make bench`: the product beside raw baselines, in one run (docs/benchmarks.md).
# Starts PostgreSQL, Redis and RabbitMQ if they are down, then runs tests/bench/bench_main.py
# with any arguments given (e.g. `--only pipeline,latency`, `--profile`, `--help`).
# Results: a table on stdout, JSON in test-artifacts/bench/, the chart in
# test-artifacts/bench/pipeline.png (docs/img/bench-pipeline.png is copied from it by hand).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash infra/local/ensure-services.sh
# The audio fixtures of the probing benchmark need ffmpeg, sox, lame and espeak-ng (`make tools`).
exec "$root/.venv/bin/python" tests/bench/bench_main.py "$@"
