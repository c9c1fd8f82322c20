"""The Helm chart and the plain manifests: lint, render, validate every object against its
schema, and check that the manifests cannot drift from the functions."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path

import pytest
from deploy_helpers import (
    CHART,
    CI_VALUES,
    CRD_DIR,
    K8S_VERSIONS,
    ROOT,
    TOOLS,
    TOOLS_PY,
    cloudevent_functions,
    function_names,
    function_spec,
    helm_template,
    http_functions,
    knative_services,
    objects_of,
    rabbitmq_sources,
    run,
    yaml_docs,
)

ISO_DURATION = re.compile(r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
RENDERINGS = ("chart", "external", "plain")


@pytest.fixture(params=RENDERINGS)
def rendering(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, request.getfixturevalue(f"{request.param}_objects")


MODEL_GROUPS = ("gateway.networking.k8s.io", "monitoring.coreos.com")  # validate_models.mjs


def builtin(obj: dict) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    if group in MODEL_GROUPS:
        return False
    return group == "" or group.endswith(".k8s.io") or "." not in group


# --- helm -------------------------------------------------------------------------------


def test_helm_lint(tools: Path) -> None:
    proc = run([tools / "helm", "lint", "--strict", CHART, "-f", CI_VALUES])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_values_schema_rejects_unknown_settings(tools: Path) -> None:
    proc = helm_template(tools, "-f", str(CI_VALUES), "--set", "functions.ingest.minscale=2")
    assert proc.returncode != 0
    assert "minscale" in proc.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "config.publicBaseUrl is required"),
        (
            [
                "--set",
                "config.publicBaseUrl=https://x.example",
                "--set",
                "ingress.host=x.example",
                "--set",
                "grafana.adminPassword=x",
                "--set",
                "eventing.clusterName=rabbitmq",
            ],
            "secrets.databaseUrl is required",
        ),
        (
            ["-f", str(CI_VALUES), "--set", "eventing.clusterName=rabbitmq"],
            "set exactly one of clusterName, connectionSecret or connection.uri",
        ),
    ],
)
def test_missing_settings_fail_with_a_clear_message(
    tools: Path, values: list[str], message: str
) -> None:
    proc = helm_template(tools, *values)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_plain_manifests_are_rendered_from_the_chart(tools: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "rendered.yaml"
    proc = run(
        ["bash", ROOT / "infra/tools/render-manifests.sh", fresh],
        env={**os.environ, "HELM": str(tools / "helm")},
    )
    assert proc.returncode == 0, proc.stderr
    committed = (ROOT / "k8s/manifests/call-downloader.yaml").read_text(encoding="utf-8")
    assert fresh.read_text(encoding="utf-8") == committed, (
        "k8s/manifests/call-downloader.yaml is stale: run `make deploy-render`"
    )


def test_kustomization_puts_everything_in_its_namespace(plain_objects: list[dict]) -> None:
    for obj in plain_objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "call-downloader", obj["metadata"]["name"]


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_strictly(
    tools: Path, tmp_path: Path, rendering: tuple[str, list[dict]], version: str
) -> None:
    name, objects = rendering
    docs = [o for o in objects if builtin(o)]
    assert docs
    path = tmp_path / f"{name}.yaml"
    # JSON is YAML: no YAML writer needed on this side.
    path.write_text("\n---\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    proc = run([tools / "kubernetes-validate", "--strict", "-k", version, path])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Couldn't find schema" not in output, output


def validate_models(objects: list[dict]) -> tuple[int, dict]:
    proc = run(
        ["node", ROOT / "infra/tools/validate_models.mjs"],
        input=json.dumps(objects),
        env={**os.environ, "MODELS_DIR": str(TOOLS / "node/node_modules")},
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_objects_of_other_apis_validate(tools: Path, rendering: tuple[str, list[dict]]) -> None:
    """Knative, Gateway API and Prometheus Operator objects against their models."""
    name, objects = rendering
    returncode, report = validate_models(objects)
    assert returncode == 0 and not report["errors"], report["errors"]
    kinds = sorted(
        c.split(" ")[0].split("/")[0] + " " + c.split("(")[1][:-1] for c in report["checked"]
    )
    knative = 0 if name == "external" else len(function_names())
    assert kinds.count("Service serving.knative.dev/v1") == knative
    # The CI values switch the HTTPRoute and the PodMonitors on (functions, relay and the
    # RabbitMQ nodes; the dispatchers too on the external platform).
    routes, monitors = {"chart": (1, 3), "external": (1, 4), "plain": (0, 0)}[name]
    assert kinds.count("HTTPRoute gateway.networking.k8s.io/v1") == routes
    assert kinds.count("PodMonitor monitoring.coreos.com/v1") == monitors
    assert len(kinds) == knative + routes + monitors, kinds


def test_the_model_validator_catches_mistakes(tools: Path, chart_objects: list[dict]) -> None:
    route = json.loads(json.dumps(objects_of(chart_objects, "HTTPRoute")[0]))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # Ingress' spelling
    monitor = json.loads(json.dumps(objects_of(chart_objects, "PodMonitor")[0]))
    monitor["spec"]["podMetricsEndpoints"] = "user-port"
    service = json.loads(json.dumps(objects_of(chart_objects, "Service", "serving")[0]))
    service["spec"]["template"]["spec"]["containerConcurrency"] = "eight"
    returncode, report = validate_models([route, monitor, service])
    assert returncode == 1 and len(report["errors"]) == 3, report


def test_custom_resources_validate(tools: Path, rendering: tuple[str, list[dict]]) -> None:
    name, objects = rendering
    assert CRD_DIR.is_dir(), f"the eventing-rabbitmq CRDs are expected in {CRD_DIR}"
    proc = run(
        [
            TOOLS_PY,
            ROOT / "infra/tools/validate_resources.py",
            "--crd-dir",
            CRD_DIR,
            "--k8s-version",
            K8S_VERSIONS[-1],
        ],
        input=json.dumps(objects),
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and not report["errors"], report["errors"] or proc.stderr
    by = [c["by"] for c in report["checked"]]
    knative = 0 if name == "external" else 1
    assert by.count("crd-schema") == knative * len(cloudevent_functions())
    assert by.count("pod-template-strict") == knative * len(function_names())


def test_the_crd_validator_catches_mistakes(tools: Path, chart_objects: list[dict]) -> None:
    source = json.loads(json.dumps(objects_of(chart_objects, "RabbitmqSource")[0]))
    source["spec"]["delivery"]["retries"] = 3  # a typo of `retry`
    service = json.loads(json.dumps(objects_of(chart_objects, "Service", "serving")[0]))
    service["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    proc = run(
        [TOOLS_PY, ROOT / "infra/tools/validate_resources.py", "--crd-dir", CRD_DIR],
        input=json.dumps([source, service]),
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert any("retries" in e for e in report["errors"])
    assert any("readinesProbe" in e for e in report["errors"])


# --- drift: every function deployed, every consumer wired ---------------------------------


@pytest.mark.parametrize("name", function_names())
def test_every_function_has_a_knative_service(
    name: str, chart_objects: list[dict], plain_objects: list[dict]
) -> None:
    for objects in (chart_objects, plain_objects):
        services = knative_services(objects)
        assert name in services, f"no Knative Service for functions/{name}"
        template = services[name]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert int(annotations["autoscaling.knative.dev/min-scale"]) >= 0
        assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1
        spec = template["spec"]
        (container,) = spec["containers"]
        assert re.search(rf"/{re.escape(name)}:[^/]+$", container["image"])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert "PORT" not in env, "Knative sets PORT itself"
        assert env["THREADS"] == str(spec["containerConcurrency"])
        assert container["readinessProbe"] and container["livenessProbe"]
        assert container["resources"]["limits"]["memory"]
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["allowPrivilegeEscalation"] is False


def test_http_probes_use_the_health_endpoints(plain_objects: list[dict]) -> None:
    for name, service in knative_services(plain_objects).items():
        container = service["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name


@pytest.mark.parametrize("name", cloudevent_functions())
def test_every_consumer_has_a_source_with_a_delivery_spec(
    name: str, chart_objects: list[dict], plain_objects: list[dict]
) -> None:
    for objects in (chart_objects, plain_objects):
        sources = rabbitmq_sources(objects)
        assert name in sources, f"no RabbitmqSource feeds functions/{name}"
        spec = sources[name]["spec"]
        ksvc = knative_services(objects)[name]["metadata"]["name"]
        assert spec["sink"]["ref"] == {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": ksvc,
        }
        delivery = spec["delivery"]
        assert delivery["retry"] >= 1
        assert delivery["backoffPolicy"] == "exponential"
        assert ISO_DURATION.match(delivery["backoffDelay"])
        resources = spec["rabbitmqResourcesConfig"]
        assert resources["predeclared"] is True
        assert resources["queueName"] == f"calldl.{name}"


@pytest.mark.parametrize("name", http_functions())
def test_http_functions_are_not_fed_events(name: str, chart_objects: list[dict]) -> None:
    assert name not in rabbitmq_sources(chart_objects)


def test_sources_match_the_topology(tools: Path) -> None:
    """The chart's queues and event types are the ones `call-downloader topology` binds."""
    from call_downloader.events.broker import SUBSCRIPTIONS, Topology

    values = yaml_docs(CHART / "values.yaml")[0]
    consumes = {
        name: fn["consumes"] for name, fn in values["functions"].items() if fn.get("consumes")
    }
    assert set(consumes) == set(SUBSCRIPTIONS) == set(cloudevent_functions())
    topo = Topology(values["config"]["eventNamespace"])
    for name, types in SUBSCRIPTIONS.items():
        assert f"{values['config']['eventNamespace']}.{consumes[name]['queue']}" == topo.queue(name)
        assert sorted(consumes[name]["eventTypes"]) == sorted(types)
    for name, fn in values["functions"].items():
        assert (fn["target"], fn["signatureType"]) == function_spec(name)


def test_no_source_or_service_without_a_function(chart_objects: list[dict]) -> None:
    names = set(function_names())
    assert set(knative_services(chart_objects)) <= names
    assert set(rabbitmq_sources(chart_objects)) <= names


def test_external_platform_runs_a_dispatcher_per_consumer(external_objects: list[dict]) -> None:
    assert not knative_services(external_objects)
    assert not rabbitmq_sources(external_objects)
    dispatchers = {
        d["metadata"]["labels"]["call-downloader/function"]: d
        for d in objects_of(external_objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "dispatcher"
    }
    assert set(dispatchers) == set(cloudevent_functions())
    for name, deployment in dispatchers.items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["dispatcher", "--function", name]
        assert args[args.index("--invoke-url") + 1] == (
            f"http://{name}.openfaas-fn.svc.cluster.local:8080/"
        )


# --- the rest of the release --------------------------------------------------------------


def test_migration_job_then_topology(plain_objects: list[dict]) -> None:
    (job,) = objects_of(plain_objects, "Job")
    pod = job["spec"]["template"]["spec"]
    assert [c["args"][0] for c in pod["initContainers"]] == ["migrate"]
    assert [c["args"] for c in pod["containers"]] == [["topology"]]
    assert job["metadata"]["name"].endswith("-migrate-r1")


def test_relay_and_ui(plain_objects: list[dict]) -> None:
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in objects_of(plain_objects, "Deployment")
    }
    relay = deployments["relay"]["spec"]
    container = relay["template"]["spec"]["containers"][0]
    assert container["args"] == ["relay", "--health-port", "9100"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert 1 <= relay["replicas"] <= 2
    ui = deployments["ui"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in ui["env"]}
    services = knative_services(plain_objects)
    for name, var in (("ingest", "INGEST_URL"), ("auth", "AUTH_URL"), ("calls", "CALLS_URL")):
        assert env[var] == (
            f"http://{services[name]['metadata']['name']}.call-downloader.svc.cluster.local"
        )
    (ingress,) = objects_of(plain_objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == deployments["ui"]["metadata"]["name"]
    assert ingress["spec"]["tls"]


def test_monitoring_uses_the_shared_files(chart_objects: list[dict]) -> None:
    configmaps = {c["metadata"]["name"]: c for c in objects_of(chart_objects, "ConfigMap")}
    rules = configmaps["call-downloader-prometheus-rules"]["data"]["alerts.yml"]
    assert rules.strip() == (ROOT / "infra/prometheus/alerts.yml").read_text().strip()
    dashboards = configmaps["call-downloader-grafana-dashboards"]["data"]
    for path in (ROOT / "infra/grafana/dashboards").glob("*.json"):
        assert json.loads(dashboards[path.name]) == json.loads(path.read_text())
    prometheus = yaml_docs(configmaps["call-downloader-prometheus"]["data"]["prometheus.yml"])[0]
    jobs = {j["job_name"] for j in prometheus["scrape_configs"]}
    assert {"functions", "rabbitmq", "rabbitmq-queues"} <= jobs


# --- network policy ---------------------------------------------------------------------


def egress_allows(policy: dict, address: str, port: int) -> bool:
    """Whether an ipBlock rule of the policy lets `address:port` out (selectors ignored)."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"].get("egress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if not block or ip not in ipaddress.ip_network(block["cidr"]):
                continue
            if not any(ip in ipaddress.ip_network(ex) for ex in block.get("except", [])):
                return True
    return False


def test_functions_reach_the_internet_but_no_private_address(plain_objects: list[dict]) -> None:
    policies = {p["metadata"]["name"]: p for p in objects_of(plain_objects, "NetworkPolicy")}
    policy = policies["call-downloader-functions"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    for public in ("8.8.8.8", "1.1.1.1", "203.0.113.50"):
        assert egress_allows(policy, public, 443), public
    for private in (
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.10",
        "169.254.169.254",
        "127.0.0.1",
        "100.64.0.1",
        "0.0.0.0",
    ):
        assert not egress_allows(policy, private, 443), private
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 5432, 6379, 5672} <= ports
    ingress_namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "namespaceSelector" in peer
    }
    assert "knative-serving" in ingress_namespaces


def test_every_workload_is_under_a_policy(plain_objects: list[dict]) -> None:
    selectors = [
        p["spec"]["podSelector"]["matchLabels"] for p in objects_of(plain_objects, "NetworkPolicy")
    ]
    pods = [
        o["spec"]["template"]["metadata"]["labels"]
        for o in plain_objects
        if o["kind"] in ("Deployment", "Job")
    ]
    pods += [
        s["spec"]["template"]["metadata"]["labels"]
        for s in knative_services(plain_objects).values()
    ]
    for labels in pods:
        assert any(sel.items() <= labels.items() for sel in selectors), labels
