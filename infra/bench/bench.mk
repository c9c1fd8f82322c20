# Benchmarks, included by the Makefile (`-include infra/bench/bench.mk`).
#   make bench                    everything (about 3 minutes on 2 cores), table + JSON
#   make bench BENCH_ARGS="--only pipeline,latency --profile"
# See docs/benchmarks.md for what is measured against which baseline.
BENCH_ARGS ?=

.PHONY: bench

bench: install
	bash infra/bench/run.sh $(BENCH_ARGS)
