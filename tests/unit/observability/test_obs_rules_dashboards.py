"""The alert rules, their unit tests, the Prometheus configuration and the Grafana dashboard
load and are consistent with the metrics the code exports.

promtool (Debian's `prometheus` package: `apt-get install prometheus`) checks the rule files
and the PromQL of every dashboard query, and runs infra/prometheus/alerts_test.yml; without
it those tests are skipped (reported as skipped) and the structural checks still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from call_downloader.observability import metrics, state

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "infra/prometheus"
DASHBOARDS = ROOT / "infra/grafana/dashboards"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

# Grafana's variables, replaced by plain durations for checking the PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Families from elsewhere: Prometheus itself and RabbitMQ's prometheus plugin.
FOREIGN = re.compile(r"^(up|rabbitmq_detailed_queue_messages(_ready|_unacked)?)$")
METRIC_NAME = re.compile(r"\b((?:calldl|rabbitmq)_[a-z_]+|up)\b(?!\s*\()")


def exported_names() -> set[str]:
    """Every series name the code can export (counters' _total, histograms' parts)."""
    metrics.m()
    registry_text = metrics.generate_latest(metrics.REGISTRY).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(registry_text):
        base = family.name
        if family.type == "counter":
            names.update({base + "_total", base + "_created"})
        elif family.type == "histogram":
            names.update({base + "_bucket", base + "_count", base + "_sum", base + "_created"})
        else:
            names.add(base)
    names.update(_state_names())
    return names


def _state_names() -> set[str]:
    from types import SimpleNamespace

    collector = state.StateCollector(cache_seconds=0)
    original = state.query_state
    state.query_state = lambda connect=None: {  # type: ignore[assignment]
        "now": __import__("datetime").datetime.now(__import__("datetime").UTC),
        "outbox": [SimpleNamespace(type="x", unpublished=1, due=1, oldest_due=None)],
        "calls": [],
        "deliveries": [],
    }
    try:
        return {f.name for f in collector.collect()}
    finally:
        state.query_state = original


def referenced_names(expr: str) -> set[str]:
    # Label matchers and strings are not metric names.
    stripped = re.sub(r"\{[^}]*\}", "", expr)
    stripped = re.sub(r'"[^"]*"', "", stripped)
    names = set(METRIC_NAME.findall(stripped))
    return {n for n in names if n not in ("by", "without")}


def rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", target["expr"]))
    return out


# --- alert rules ---------------------------------------------------------------------------


def test_alert_rules_are_well_formed():
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    assert doc["groups"], "no rule groups"
    names = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"].startswith("CallDownloader") and rule["alert"] not in names
        names.add(rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
    # The issue's list: stuck calls, dead letters, AI errors, destination, outbox, a function.
    for needed in (
        "CallDownloaderCallsStuck",
        "CallDownloaderDeliveryDeadLettersGrowing",
        "CallDownloaderEventDeadLetters",
        "CallDownloaderAiErrorRate",
        "CallDownloaderDestinationFailing",
        "CallDownloaderOutboxBacklogGrowing",
        "CallDownloaderFunctionDown",
    ):
        assert needed in names


def test_rules_and_dashboards_use_only_exported_metrics():
    known = exported_names()
    exprs = [(r["alert"], r["expr"]) for r in rules()] + dashboard_targets()
    for where, expr in exprs:
        for name in referenced_names(expr):
            assert name in known or FOREIGN.match(name), f"{where}: unknown metric {name}"


def test_every_alert_has_a_unit_test():
    doc = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    tested = {
        case["alertname"] for test in doc["tests"] for case in test.get("alert_rule_test", [])
    }
    assert tested == {r["alert"] for r in rules()}


@needs_promtool
def test_promtool_checks_the_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(PROM / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts():
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=PROM,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus configuration --------------------------------------------------------------


def test_prometheus_config_scrapes_relay_dispatchers_and_keeps_function_labels():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("functions", "relay", "dispatchers", "rabbitmq", "rabbitmq-queues"):
        assert name in jobs
    for name in ("functions", "relay", "dispatchers"):
        assert jobs[name].get("honor_labels") is True
    assert jobs["rabbitmq-queues"]["metrics_path"] == "/metrics/detailed"
    assert "queue_coarse_metrics" in jobs["rabbitmq-queues"]["params"]["family"]


@needs_promtool
def test_promtool_checks_the_prometheus_config(tmp_path):
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]  # the container path, here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -----------------------------------------------------------------------------------


def test_dashboards_load_and_are_laid_out():
    datasource = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths
    for path in paths:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{panel['title']} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip() and target["refId"]


def test_dashboard_covers_the_issue_topics():
    titles = " | ".join(
        p["title"].lower()
        for path in DASHBOARDS.glob("*.json")
        for p in json.loads(path.read_text())["panels"]
    )
    for topic in ("stage", "latenc", "error", "queue", "dead", "ai ", "destination"):
        assert topic in titles, topic


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    records = []
    for i, (where, expr) in enumerate(dashboard_targets()):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{where}: unknown Grafana variable in {expr}"
        records.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]})
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "queries.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_lints_the_exposition(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.ai_request("result", 0.5)
    metrics.m().http_requests.labels("lint", "/x", "GET", "200").inc()
    body = metrics.render()[0]
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
