# Fault drills (docs/reliability.md). Include from the Makefile: `-include infra/drill/drill.mk`.
# `make drill` runs the full drill (200 calls, 2 servers, every fault) and writes a JSON report;
# pass options with DRILL_ARGS, e.g. `make drill DRILL_ARGS="--calls 500 --faults kill,ai"`.
DRILL_ARGS ?=

.PHONY: drill drill-short

drill: install
	$(BIN)/python infra/drill/drill.py --json test-artifacts/drill-report.json $(DRILL_ARGS)

# The short form that `make test` runs as tests/drills/test_drill_short.py (marker `drill`).
drill-short: install
	$(BIN)/pytest tests/drills -m drill -q
