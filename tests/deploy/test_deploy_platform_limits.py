"""The platforms' contracts the chart must keep (issue 18), checked on its rendering:
the RabbitmqSource adapter's retry arithmetic (cloudevents/sdk-go: period x 2^n for retry n,
n from 1) and the docs' account of it; settings changes rolling the pods; scratch space for
the recordings in flight; every RabbitMQ node scraped; Alertmanager's configuration valid
(amtool) and Prometheus sending to it; the Gateway API route."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from deploy_helpers import (
    CI_VALUES,
    ROOT,
    helm_template,
    knative_services,
    objects_of,
    rabbitmq_sources,
    run,
    yaml_docs,
)

# What a source may spend retrying one message (holding one of its `parallelism` workers):
# enough for a blip (a pod restart, a database failover), no more.
BLIP_BUDGET_SECONDS = 300


def _seconds(iso: str) -> float:
    m = re.fullmatch(r"PT(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", iso)
    assert m, f"{iso}: expected PT[nM][nS]"
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def source_schedule(source: dict) -> list[float]:
    """The waits before each retry, as the adapter computes them (exponential policy)."""
    delivery = source["spec"]["delivery"]
    assert delivery["backoffPolicy"] == "exponential"
    return [_seconds(delivery["backoffDelay"]) * 2**n for n in range(1, delivery["retry"] + 1)]


def test_source_retries_ride_out_a_blip_and_no_more(chart_objects: list[dict]) -> None:
    docs = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    for name, source in rabbitmq_sources(chart_objects).items():
        waits = source_schedule(source)
        assert 30 <= sum(waits) <= BLIP_BUDGET_SECONDS, (name, waits)
    # docs/deploy.md states the schedule the chart renders.
    waits = source_schedule(next(iter(rabbitmq_sources(chart_objects).values())))
    stated = ", ".join(f"{w:g}" for w in waits[:-1]) + f" and {waits[-1]:g} s"
    assert stated in docs, f"docs/deploy.md should state the waits: {stated}"
    assert f"{sum(waits):g} s in all, {len(waits) + 1} tries" in docs


def _annotations(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("annotations", {})


def _rolled(objects: list[dict]) -> dict[str, dict]:
    """{component or function: pod template annotations} of what must roll on a change."""
    out = {n: _annotations(s) for n, s in knative_services(objects).items()}
    for d in objects_of(objects, "Deployment"):
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in ("relay", "ui", "dispatcher"):
            name = d["metadata"]["labels"].get("call-downloader/function", "")
            out[f"{component}{'-' + name if name else ''}"] = _annotations(d)
    return out


@pytest.mark.parametrize(
    ("setting", "annotation"),
    [
        ("config.aiUrl=https://other-ai.example.test/", "checksum/config"),
        ("secrets.jwtSecret=another-test-only-secret", "checksum/secret"),
        ("secrets.rolloutToken=2026-12-01", "checksum/secret"),
    ],
)
def test_a_settings_change_rolls_every_pod(
    tools: Path, chart_objects: list[dict], setting: str, annotation: str
) -> None:
    proc = helm_template(tools, "-f", str(CI_VALUES), "--set", setting)
    assert proc.returncode == 0, proc.stderr
    before, after = _rolled(chart_objects), _rolled(yaml_docs(proc.stdout))
    assert set(before) >= {"relay", "ui", "ingest", "call-ai"}
    for name in before:
        assert before[name][annotation] != after[name][annotation], name


def test_scratch_space_holds_the_recordings_in_flight(chart_objects: list[dict]) -> None:
    values = yaml_docs(ROOT / "k8s/helm/call-downloader/values.yaml")[0]
    max_upload = int(values["config"]["maxUploadBytes"])
    for name, service in knative_services(chart_objects).items():
        spec = service["spec"]["template"]["spec"]
        (tmp,) = [v for v in spec["volumes"] if v["name"] == "tmp"]
        size = int(tmp["emptyDir"]["sizeLimit"])
        resources = spec["containers"][0]["resources"]
        request = int(resources["requests"]["ephemeral-storage"])
        limit = int(resources["limits"]["ephemeral-storage"])
        assert request <= size <= limit, name
        if name in ("analyze-duration", "call-ai"):  # they spool whole recordings
            assert size >= max_upload * spec["containerConcurrency"], name
            assert request >= max_upload, name


def test_every_rabbitmq_node_is_scraped(chart_objects: list[dict]) -> None:
    (config_map,) = [
        c
        for c in objects_of(chart_objects, "ConfigMap")
        if c["metadata"]["name"] == "call-downloader-prometheus"
    ]
    config = yaml_docs(config_map["data"]["prometheus.yml"])[0]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for name in ("rabbitmq", "rabbitmq-queues"):
        job = jobs[name]
        assert "static_configs" not in job, "one address would show one node at a time"
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == ["rabbitmq-system"]
    roles = [
        r
        for r in objects_of(chart_objects, "Role")
        if r["metadata"].get("namespace") == "rabbitmq-system"
    ]
    assert roles and roles[0]["rules"][0]["resources"] == ["pods"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "call-downloader-alertmanager:9093"
    ]
    # (Debian's promtool is built without Kubernetes discovery: it cannot check this file.)
    monitors = {m["metadata"]["name"]: m for m in objects_of(chart_objects, "PodMonitor")}
    rabbit = monitors["call-downloader-rabbitmq"]["spec"]
    assert rabbit["namespaceSelector"]["matchNames"] == ["rabbitmq-system"]
    assert rabbit["selector"]["matchLabels"]["app.kubernetes.io/component"] == "rabbitmq"


def test_alertmanager_config_is_valid(chart_objects: list[dict], tmp_path: Path) -> None:
    (secret,) = [
        s
        for s in objects_of(chart_objects, "Secret")
        if s["metadata"]["name"] == "call-downloader-alertmanager"
    ]
    path = tmp_path / "alertmanager.yml"
    path.write_text(secret["stringData"]["alertmanager.yml"], encoding="utf-8")
    amtool = shutil.which("amtool")
    assert amtool, "amtool (Debian prometheus-alertmanager) is installed by make tools"
    proc = run([amtool, "check-config", path])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml_docs(secret["stringData"]["alertmanager.yml"])[0]
    assert config["route"]["receiver"] == config["receivers"][0]["name"]


def test_alertmanager_needs_a_receiver(tools: Path) -> None:
    proc = helm_template(tools, "-f", str(CI_VALUES), "--set", "alertmanager.receivers=null")
    assert proc.returncode != 0 and "alertmanager.receivers" in proc.stderr


def test_gateway_api_route_beside_the_ingress(chart_objects: list[dict]) -> None:
    (route,) = objects_of(chart_objects, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "call-downloader-ui", "port": 80}]
    assert rule["timeouts"]["request"] == "600s"
    assert objects_of(chart_objects, "Ingress"), "the Ingress stays an option"
