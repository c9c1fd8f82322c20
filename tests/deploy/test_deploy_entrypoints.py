"""Each function image's command line, run here: the CMD of functions/<name>/Dockerfile with
the image's environment, from the function's folder (the image's WORKDIR holds the same
files), must serve /healthz, and /readyz once PostgreSQL, Redis and RabbitMQ answer, and the
OpenFaaS Community Edition probe path /_/health (plus /_/ready).
Only for functions whose main.py exists. Binds 127.0.0.1 (HOST) on a free port (PORT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import ROOT, function_names, http_get, serving_function

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", function_names())
def test_container_command_serves_health(name: str, database_url: str, tmp_path: Path) -> None:
    if not (ROOT / "functions" / name / "main.py").exists():
        pytest.skip(f"functions/{name}/main.py does not exist yet")
    with serving_function(name, tmp_path, DATABASE_URL=database_url) as base:
        for path in ("/healthz", "/_/health", "/readyz", "/_/ready"):
            status, body = http_get(f"{base}{path}")
            assert status == 200, (path, body)
