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
    assert "call-downloader" in fn["secrets"]
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
