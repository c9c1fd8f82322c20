"""infra/openfaas/stack.yml: every function, the connector's topics on the consumers."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import ROOT, cloudevent_functions, function_names, yaml_docs

STACK = ROOT / "infra/openfaas/stack.yml"


@pytest.fixture(scope="module")
def stack(tools: Path) -> dict:
    return yaml_docs(STACK)[0]


def test_stack_targets_openfaas(stack: dict) -> None:
    assert stack["provider"]["name"] == "openfaas"
    assert set(stack["functions"]) == set(function_names())


@pytest.mark.parametrize("name", function_names())
def test_every_function_is_deployed(stack: dict, name: str) -> None:
    fn = stack["functions"][name]
    assert fn["image"].endswith(f"/{name}:${{IMAGE_TAG:-0.1.0}}")
    assert fn["skip_build"] is True, "images are built from the repository root"
    assert (STACK.parent / fn["handler"]).resolve() == ROOT / "functions" / name
    annotations = fn["annotations"]
    assert annotations["com.openfaas.health.http.path"] == "/healthz"
    assert annotations["com.openfaas.ready.http.path"] == "/readyz"
    # Scaling settings are labels: the same keys as annotations are ignored.
    assert int(fn["labels"]["com.openfaas.scale.min"]) >= 1
    assert "com.openfaas.scale.min" not in annotations
    assert fn["readonly_root_filesystem"] is True
    assert "call-downloader-core" in fn["secrets"]
    assert fn["limits"]["memory"]


@pytest.mark.parametrize("name", function_names())
def test_consumers_carry_their_queue_as_topic(stack: dict, name: str) -> None:
    from call_downloader.events.broker import Topology

    annotations = stack["functions"][name]["annotations"]
    if name in cloudevent_functions():
        queue = Topology("calldl").queue(name)
        assert annotations["topic"] == "${EVENT_NAMESPACE:-calldl}." + queue.split(".", 1)[1]
    else:
        assert "topic" not in annotations


def test_connector_reads_exactly_the_consumer_queues(tools: Path) -> None:
    from call_downloader.events.broker import Topology

    values = yaml_docs(ROOT / "infra/openfaas/rabbitmq-connector-values.yaml")[0]
    queues = {q["name"] for q in values["queues"]}
    assert queues == {Topology("calldl").queue(n) for n in cloudevent_functions()}
    assert all(q["durable"] for q in values["queues"])


# --- OpenFaaS Community Edition's limits (faas-netes: pkg/handlers/replica_reader.go
# MaxReplicas = 5, MaxFunctions = 15; pkg/k8s/probes.go probes GET /_/health) -----------------


def test_defaults_stay_within_community_edition_limits(stack: dict) -> None:
    assert len(stack["functions"]) <= 15
    for name, fn in stack["functions"].items():
        scale_max = int(fn["labels"]["com.openfaas.scale.max"])
        assert 1 <= int(fn["labels"]["com.openfaas.scale.min"]) <= scale_max <= 5, name


def test_functions_get_only_the_secrets_they_read(stack: dict) -> None:
    jwt = {"ingest", "auth", "calls", "call-ai"}
    for name, fn in stack["functions"].items():
        expected = {"call-downloader-core"}
        if name in jwt:
            expected.add("call-downloader-jwt")
        if name == "call-ai":
            expected.add("call-downloader-ai")
        assert set(fn["secrets"]) == expected, name


def test_connector_sends_cloudevents(tools: Path) -> None:
    values = yaml_docs(ROOT / "infra/openfaas/rabbitmq-connector-values.yaml")[0]
    assert values["contentType"] == "application/cloudevents+json"
    for queue in values["queues"]:
        assert (queue["durable"], queue["autodelete"], queue["exclusive"]) == (True, False, False)


@pytest.mark.integration
def test_the_connector_declaration_meets_the_topology_queues(tools: Path) -> None:
    """On the real RabbitMQ: the connector's declaration (its flags, no arguments) against the
    queues `call-downloader topology` declares. The flags agree; the arguments cannot (the
    connector has no setting for them), and RabbitMQ refuses the declaration: what
    docs/deploy.md says about the connector rests on this."""
    import uuid

    import pika

    from call_downloader.events.broker import Topology, connect

    values = yaml_docs(ROOT / "infra/openfaas/rabbitmq-connector-values.yaml")[0]
    topo = Topology(f"cdtest_{uuid.uuid4().hex[:8]}")
    conn = connect()
    try:
        topo.declare(conn.channel())
        for queue in values["queues"]:
            name = topo.namespace + "." + queue["name"].split(".", 1)[1]
            channel = conn.channel()
            channel.queue_declare(name, passive=True)  # it exists: the connector may consume
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                channel.queue_declare(
                    name,
                    durable=queue["durable"],
                    auto_delete=queue["autodelete"],
                    exclusive=queue["exclusive"],
                )
            assert refused.value.reply_code == 406  # PRECONDITION_FAILED: inequivalent arg
    finally:
        topo.delete(conn.channel())
        conn.close()
