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
# The audio fixtures of the probing benchmark need ffmpeg, sox, lame and espeak-ng.
need=()
for tool in ffmpeg sox lame espeak-ng; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing audio tools for the fixtures: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg sox libsox-fmt-all lame espeak-ng >/dev/null
fi
exec "$root/.venv/bin/python" tests/bench/bench_main.py "$@"
