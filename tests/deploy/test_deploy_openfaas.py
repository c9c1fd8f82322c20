"""infra/openfaas/stack.yml: every function, the connector's topics on the consumers."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
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


def _connector_declares(channel, name: str, queue: dict) -> None:
    """What the connector does with each queue of its values: its flags, no arguments."""
    channel.queue_declare(
        name,
        durable=queue["durable"],
        auto_delete=queue["autodelete"],
        exclusive=queue["exclusive"],
    )


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def quorum_vhost() -> Iterator[str]:
    """A virtual host of this test's own whose default queue type is quorum, as the docs tell
    OpenFaaS users to create (removed afterwards with everything in it)."""
    vhost = f"cdtest_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost, "--default-queue-type", "quorum")
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.mark.integration
def test_queue_arguments_refuse_the_connector_declaration(tools: Path) -> None:
    """On the real RabbitMQ, with dead-lettering in the queues' arguments (the default): the
    connector's declaration differs in its arguments and RabbitMQ refuses it."""
    from call_downloader.events.broker import Topology, connect

    values = yaml_docs(ROOT / "infra/openfaas/rabbitmq-connector-values.yaml")[0]
    topo = Topology(f"cdtest_{uuid.uuid4().hex[:8]}")
    conn = connect()
    try:
        topo.declare(conn.channel())
        for queue in values["queues"]:
            name = topo.namespace + "." + queue["name"].split(".", 1)[1]
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                _connector_declares(conn.channel(), name, queue)
            assert refused.value.reply_code == 406  # PRECONDITION_FAILED: inequivalent arg
    finally:
        topo.delete(conn.channel())
        conn.close()


@pytest.mark.integration
def test_dead_lettering_by_policy_meets_the_connector(tools: Path, quorum_vhost: str) -> None:
    """RABBITMQ_DEAD_LETTERING=policy, in a virtual host whose default queue type is quorum,
    with the policies `call-downloader topology --print-policies` prints applied: the
    connector's declaration is accepted, the queues stay quorum queues, and a message the
    consumer rejects still goes to <queue>.dlq."""
    from call_downloader.events import types as ev
    from call_downloader.events.broker import Topology, connect

    url = os.environ["RABBITMQ_URL"].rsplit("/", 1)[0] + "/" + quorum_vhost
    env = {
        **os.environ,
        "RABBITMQ_URL": url,
        "RABBITMQ_DEAD_LETTERING": "policy",
        "EVENT_NAMESPACE": "calldl",  # the connector values' names; the vhost is this test's
    }
    printed = subprocess.run(
        [sys.executable, "-m", "call_downloader.cli", "topology", "--print-policies"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert len(printed) == len(Topology("calldl").policies())
    for line in printed:
        command = shlex.split(line)
        assert command[:4] == ["rabbitmqctl", "set_policy", "-p", quorum_vhost]
        _rabbitmqctl(*command[1:])
    subprocess.run(
        [sys.executable, "-m", "call_downloader.cli", "topology"],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    values = yaml_docs(ROOT / "infra/openfaas/rabbitmq-connector-values.yaml")[0]
    topo = Topology("calldl", "policy")
    conn = connect(url)
    try:
        channel = conn.channel()
        for queue in values["queues"]:
            assert queue["name"].split(".", 1)[0] == "calldl"
            _connector_declares(channel, queue["name"], queue)  # accepted: no 406
        analyze = topo.queue("analyze-duration")
        channel.basic_publish(topo.exchange, ev.CALL_RECEIVED, b"{}")
        method = None
        for _ in range(50):
            method, _props, _body = channel.basic_get(analyze)
            if method:
                break
            time.sleep(0.1)
        assert method is not None, "the event did not reach the function queue"
        channel.basic_nack(method.delivery_tag, requeue=False)
        dead = None
        for _ in range(50):
            dead, _props, _body = channel.basic_get(topo.dead_letter_queue("analyze-duration"))
            if dead:
                break
            time.sleep(0.1)
        assert dead is not None, "the rejected event was not dead-lettered by the policy"
        channel.basic_ack(dead.delivery_tag)
    finally:
        conn.close()
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", quorum_vhost, "name", "type", "policy"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    for function in ("analyze-duration", "call-ai", "deliver"):
        row = next(
            r.split() for r in listed.splitlines() if r.split()[:1] == [f"calldl.{function}"]
        )
        assert row[1] == "quorum" and row[2] == f"calldl.{function}.dead-lettering", row
