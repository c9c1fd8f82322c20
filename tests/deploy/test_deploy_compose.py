"""docker-compose.yml: valid for Compose v2, every function wired with health-gated startup,
no secret with a default, and the same defaults as the library."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_helpers import (
    ROOT,
    cloudevent_functions,
    compose,
    compose_required_variables,
    function_names,
    http_functions,
    run,
    write_env_file,
    yaml_docs,
)

DATA_SERVICES = ("postgres", "redis", "rabbitmq")


def depends(service: dict) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


def test_compose_config_is_valid(tools: Path, tmp_path: Path) -> None:
    proc = compose(tools, write_env_file(tmp_path / "test.env"), "config", "--quiet")
    assert proc.returncode == 0, proc.stderr


def test_secrets_are_required() -> None:
    required = set(compose_required_variables())
    for secret in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "RABBITMQ_PASSWORD",
        "JWT_SECRET",
        "DELIVERY_SECRET",
        "ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        assert secret in required, f"{secret} must be ${{{secret}:?...}}, never defaulted"


@pytest.mark.parametrize("variable", compose_required_variables())
def test_compose_refuses_to_run_without_each_secret(
    tools: Path, tmp_path: Path, variable: str
) -> None:
    proc = compose(
        tools, write_env_file(tmp_path / "test.env", leave_out=variable), "config", "--quiet"
    )
    assert proc.returncode != 0
    assert variable in proc.stderr, proc.stderr


def test_env_example_documents_every_variable_and_commits_no_secret() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert used <= set(example), f"undocumented in .env.example: {sorted(used - set(example))}"
    for secret in compose_required_variables():
        if secret.endswith(("PASSWORD", "SECRET")):
            assert example[secret] == "", f".env.example must leave {secret} empty"


@pytest.mark.parametrize("name", function_names())
def test_every_function_is_a_health_gated_service(compose_config: dict, name: str) -> None:
    services = compose_config["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    svc = services[name]
    assert Path(svc["build"]["context"]) == ROOT
    assert svc["build"]["dockerfile"] == f"functions/{name}/Dockerfile"
    assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    deps = depends(svc)
    assert deps.get("migrate") == "service_completed_successfully"
    for data in DATA_SERVICES:
        assert deps.get(data) == "service_healthy", f"{name} must wait for {data}"
    assert svc.get("read_only") is True and "ALL" in svc.get("cap_drop", [])
    env = svc["environment"]
    for var in ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "EVENT_NAMESPACE"):
        assert env.get(var), f"{name} lacks {var}"
    assert "PORT" not in env or env["PORT"] == "8080"


@pytest.mark.parametrize("name", cloudevent_functions())
def test_every_cloudevent_function_has_a_dispatcher(compose_config: dict, name: str) -> None:
    dispatchers = [
        svc
        for svc in compose_config["services"].values()
        if (svc.get("command") or [])[:1] == ["dispatcher"]
        and svc["command"][svc["command"].index("--function") + 1] == name
    ]
    assert len(dispatchers) == 1, f"one dispatcher service for {name}"
    cmd = dispatchers[0]["command"]
    assert cmd[cmd.index("--invoke-url") + 1] == f"http://{name}:8080/"
    deps = depends(dispatchers[0])
    assert deps.get(name) == "service_healthy"
    assert deps.get("topology") == "service_completed_successfully"


def test_dispatchers_only_for_cloudevent_functions(compose_config: dict) -> None:
    targets = {
        svc["command"][svc["command"].index("--function") + 1]
        for svc in compose_config["services"].values()
        if (svc.get("command") or [])[:1] == ["dispatcher"]
    }
    assert targets == set(cloudevent_functions())


def test_one_shot_setup_and_relay(compose_config: dict) -> None:
    services = compose_config["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["environment"].get("ADMIN_PASSWORD")
    assert services["topology"]["command"] == ["topology"]
    relay = services["relay"]
    assert relay["command"] == ["relay", "--health-port", "9100"]  # /healthz + /metrics
    assert depends(relay).get("migrate") == "service_completed_successfully"
    assert depends(relay).get("topology") == "service_completed_successfully"
    for name in ("migrate", "topology", "relay"):
        assert services[name]["build"]["dockerfile"] == "infra/docker/Dockerfile"


def test_data_services_have_health_checks(compose_config: dict) -> None:
    services = compose_config["services"]
    for name in DATA_SERVICES:
        assert services[name].get("healthcheck", {}).get("test"), name
    plugins = compose_config["configs"]["rabbitmq-plugins"]["content"]
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    assert any(
        c["target"] == "/etc/rabbitmq/enabled_plugins" for c in services["rabbitmq"]["configs"]
    )
    assert compose_config["networks"]["data"].get("internal") is True


def test_gateway_proxies_to_the_http_functions(compose_config: dict) -> None:
    gateway = compose_config["services"]["gateway"]
    assert gateway["build"]["dockerfile"] == "frontend/Dockerfile"
    for name in http_functions():
        assert depends(gateway).get(name) == "service_healthy"
    env = gateway["environment"]
    assert env["INGEST_URL"] == "http://ingest:8080"
    assert env["AUTH_URL"] == "http://auth:8080"
    assert env["CALLS_URL"] == "http://calls:8080"


def test_only_the_gateway_and_the_operator_tools_publish_ports(compose_config: dict) -> None:
    published = {n: s["ports"] for n, s in compose_config["services"].items() if s.get("ports")}
    assert set(published) <= {"gateway", "grafana", "prometheus"}
    for name in ("grafana", "prometheus"):
        assert all(p.get("host_ip") == "127.0.0.1" for p in published[name]), name


def test_optional_settings_default_like_the_library(compose_config: dict) -> None:
    """An unset knob in .env must mean what it means under `make run`."""
    from call_downloader.config import Settings

    env = {**compose_config["services"]["ingest"]["environment"]}
    env["AI_API_KEY"] = compose_config["services"]["call-ai"]["environment"]["AI_API_KEY"]
    knobs = {
        "ai_retry_delays": "AI_RETRY_DELAYS",
        "delivery_retry_delays": "DELIVERY_RETRY_DELAYS",
        "max_upload_bytes": "MAX_UPLOAD_BYTES",
        "ai_protocol": "AI_PROTOCOL",
        "ai_model": "AI_MODEL",
        "event_namespace": "EVENT_NAMESPACE",
        "ai_url": "AI_URL",
        "delivery_url": "DELIVERY_URL",
        "audio_url_allowlist": "AUDIO_URL_ALLOWLIST",
        "egress_allowlist": "EGRESS_ALLOWLIST",
        "destination_url_allowlist": "DESTINATION_URL_ALLOWLIST",
        "ai_api_key": "AI_API_KEY",
    }
    for field, var in knobs.items():
        parsed = getattr(Settings(**{field: env[var]}), field)
        assert parsed == Settings.model_fields[field].default, f"{var}: {env[var]!r}"


def test_prometheus_scrapes_every_function_and_rabbitmq(tools: Path) -> None:
    config = yaml_docs(ROOT / "infra/prometheus/prometheus.yml")[0]
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name in function_names():
        assert f"{name}:8080" in targets, f"Prometheus does not scrape {name}"
    assert "rabbitmq:15692" in targets
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    rules = yaml_docs(ROOT / "infra/prometheus/alerts.yml")[0]
    assert isinstance(rules["groups"], list)


def test_grafana_is_provisioned(compose_config: dict, tools: Path) -> None:
    import json

    grafana = compose_config["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/grafana/provisioning"] == ROOT / "infra/grafana/provisioning"
    assert mounts["/etc/grafana/dashboards"] == ROOT / "infra/grafana/dashboards"
    datasource = yaml_docs(ROOT / "infra/grafana/provisioning/datasources/prometheus.yml")[0]
    assert datasource["datasources"][0]["url"] == "${PROMETHEUS_URL}"
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    provider = yaml_docs(ROOT / "infra/grafana/provisioning/dashboards/call-downloader.yml")[0]
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dashboards = list((ROOT / "infra/grafana/dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        assert json.loads(path.read_text(encoding="utf-8"))["uid"]


# --- platform contracts (issue 18) ----------------------------------------------------------

SECRET_KEYS = (
    "DATABASE_URL",
    "REDIS_URL",
    "RABBITMQ_URL",
    "JWT_SECRET",
    "DELIVERY_SECRET",
    "ADMIN_PASSWORD",
    "AI_API_KEY",
)


def chart_secret_keys(chart_objects: list[dict]) -> dict[str, set[str]]:
    """{component: secret keys} as the Helm chart gives them (functions by name)."""
    out: dict[str, set[str]] = {}
    for obj in chart_objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        labels = obj.get("metadata", {}).get("labels", {})
        name = labels.get("app.kubernetes.io/component")
        if name == "function" and "call-downloader/function" in labels:
            name = labels["call-downloader/function"]
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            keys = {
                e["name"]
                for e in container.get("env", [])
                if e.get("valueFrom", {}).get("secretKeyRef")
            }
            if obj["kind"] == "Job":
                name = container["name"]  # migrate, topology
            if keys:
                out[name] = keys
    return out


def test_each_container_gets_only_the_secrets_it_reads(
    compose_config: dict, chart_objects: list[dict], external_objects: list[dict]
) -> None:
    chart = chart_secret_keys(chart_objects) | chart_secret_keys(external_objects)
    services = compose_config["services"]
    compose = {
        name: {k for k in svc.get("environment", {}) if k in SECRET_KEYS}
        for name, svc in services.items()
        if "environment" in svc and name not in ("postgres", "redis", "rabbitmq", "grafana")
    }
    for name in function_names():
        assert compose[name] == chart[name], name
        assert not compose[name] & {"ADMIN_PASSWORD", "DELIVERY_SECRET"}, name
    assert compose["relay"] == chart["relay"] == {"DATABASE_URL", "RABBITMQ_URL"}
    assert compose["migrate"] == chart["migrate"]
    assert compose["topology"] == chart["topology"] == {"RABBITMQ_URL"}
    for name in cloudevent_functions():
        assert compose[f"dispatcher-{name}"] == chart["dispatcher"] == {"RABBITMQ_URL"}
    # Nothing takes the whole Secret.
    for obj in chart_objects + external_objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            assert not any("secretRef" in e for e in container.get("envFrom", [])), obj


@pytest.mark.parametrize("name", ["analyze-duration", "call-ai"])
def test_functions_that_spool_recordings_have_disk_scratch_space(
    compose_config: dict, name: str
) -> None:
    svc = compose_config["services"][name]
    assert not svc.get("tmpfs"), "a tmpfs counts against the memory limit"
    assert any(v["target"] == "/tmp" and v["type"] == "volume" for v in svc["volumes"])


def test_rabbitmq_is_a_supported_release(compose_config: dict) -> None:
    image = compose_config["services"]["rabbitmq"]["image"]
    major, minor = (int(x) for x in image.split(":")[1].split("-")[0].split(".")[:2])
    assert (major, minor) >= (4, 1), f"{image}: 3.13 and older are out of support"


def test_alertmanager_config_is_valid_and_prometheus_sends_to_it(
    compose_config: dict, tmp_path: Path
) -> None:
    import shutil

    amtool = shutil.which("amtool")
    assert amtool, "amtool (Debian prometheus-alertmanager) is installed by make tools"
    config = tmp_path / "alertmanager.yml"
    config.write_text(compose_config["configs"]["alertmanager"]["content"], encoding="utf-8")
    proc = run([amtool, "check-config", config])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "webhook" in (proc.stdout + proc.stderr).lower() or "1 receivers" in proc.stdout
    am = compose_config["services"]["alertmanager"]
    assert any(c["target"] == "/etc/alertmanager/alertmanager.yml" for c in am["configs"])
    prometheus = yaml_docs(ROOT / "infra/prometheus/prometheus.yml")[0]
    targets = [
        t
        for a in prometheus["alerting"]["alertmanagers"]
        for c in a["static_configs"]
        for t in c["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    assert "ALERT_WEBHOOK_URL" in compose_required_variables()


def test_amtool_rejects_a_broken_config(tmp_path: Path) -> None:
    import shutil

    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers: []\n", encoding="utf-8")
    proc = run([shutil.which("amtool") or "amtool", "check-config", config])
    assert proc.returncode != 0
