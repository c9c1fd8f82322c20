"""The short fault drill of `make test`: a few dozen calls through a `call-downloader run`
server while every fault kind is injected once, then the Jepsen-style count. The full drill
is `make drill` (infra/drill/drill.mk); docs/reliability.md explains each fault."""

from __future__ import annotations

import json

import pytest
from drill_runner import ALL_FAULTS, DrillConfig, format_table, run_drill

pytestmark = pytest.mark.drill


def test_short_drill_loses_duplicates_and_strands_nothing(tmp_path):
    cfg = DrillConfig(
        calls=30,
        servers=1,
        send_seconds=40.0,
        settle_seconds=150.0,
        faults=ALL_FAULTS,
        seed=8,
        senders=3,
        json_path=tmp_path / "drill.json",
        label="short",
    )
    report = run_drill(cfg)
    table = format_table(report)
    counts, raw = report["counts"], report["raw"]
    for verdict in ("lost", "duplicated", "unexpected", "stuck", "corrupted", "rejected"):
        assert counts[verdict] == 0, f"{verdict}:\n{table}\n{json.dumps(report['examples'])}"
    assert counts["poison_not_dead_lettered"] == 0 and counts["dead_letters_other"] == 0, table
    assert not report["fault_errors"], report["fault_errors"]
    assert report["passed"], table
    # The faults really happened (a drill that injected nothing proves nothing).
    assert counts["accepted"] == cfg.calls
    assert raw["server_restarts"] >= 3, table
    assert raw["fault_point_crashes"], table
    assert sum(raw["ai_faults_served"].values()) >= 2, raw["ai_faults_served"]
    modes = raw["destination_answers_by_mode"]
    assert modes.get("down", 0) > 0 and modes.get("redirect", 0) > 0, modes
    assert counts["poison_injected"] == 5 and raw["duplicate_events_injected"] > 0, table
    assert {e["fault"] for e in report["timeline"]} >= {"rabbitmq", "postgres", "redis"}
