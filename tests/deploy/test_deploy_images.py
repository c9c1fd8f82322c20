"""The images: one per function (and the worker and UI images), linted by hadolint and
checked against the function they must run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from deploy_helpers import ROOT, function_names, function_spec, instructions, last_stage, run

DOCKERFILES = sorted(
    [
        *(ROOT / "functions").glob("*/Dockerfile"),
        ROOT / "infra/docker/Dockerfile",
        ROOT / "frontend/Dockerfile",
    ]
)


@pytest.mark.parametrize("name", function_names())
def test_every_function_has_an_image(name: str) -> None:
    assert (ROOT / "functions" / name / "Dockerfile").is_file(), f"functions/{name}/Dockerfile"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(tools: Path, dockerfile: Path) -> None:
    proc = run([tools / "hadolint", "--no-color", dockerfile])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_images_are_multi_stage_pinned_and_unprivileged(dockerfile: Path) -> None:
    instrs = instructions(dockerfile)
    bases = [args.split()[0] for word, args in instrs if word == "FROM"]
    assert len(bases) >= 2, "multi-stage: build tools stay out of the runtime image"
    for base in bases:
        image, _, tag = base.rpartition(":") if ":" in base else (base, "", "")
        assert tag and tag != "latest", f"base image {base!r} must carry an explicit tag"
    users = [args for word, args in last_stage(instrs) if word == "USER"]
    assert users, "the runtime stage must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric non-root USER (runAsNonRoot checks it)"
    assert any(word == "HEALTHCHECK" for word, _ in last_stage(instrs))


@pytest.mark.parametrize("name", function_names())
def test_function_image_runs_that_function_only(name: str) -> None:
    dockerfile = ROOT / "functions" / name / "Dockerfile"
    if not dockerfile.exists():
        pytest.fail(f"functions/{name}/Dockerfile is missing")
    target, signature = function_spec(name)
    runtime = last_stage(instructions(dockerfile))

    copies = [args for word, args in runtime if word == "COPY" and "--from=" not in args]
    sources = [src for args in copies for src in args.split()[:-1]]
    assert f"functions/{name}/" in sources, "the image carries the function's own folder"
    others = [s for s in sources if s.startswith("functions") and s != f"functions/{name}/"]
    assert not others, f"only this function's code belongs in its image: {others}"

    cmd = json.loads(next(args for word, args in runtime if word == "CMD"))
    assert cmd[0] == "functions-framework"
    assert f"--target={target}" in cmd
    assert "--source=main.py" in cmd
    assert f"--signature-type={signature}" in cmd
    workdir = [args for word, args in runtime if word == "WORKDIR"][-1]
    copy_dest = next(args.split()[-1] for args in copies if f"functions/{name}/" in args)
    assert copy_dest.rstrip("/") == workdir.rstrip("/"), "main.py must land in the WORKDIR"

    health = next(args for word, args in runtime if word == "HEALTHCHECK")
    assert "/healthz" in health and "PORT" in health, "the probe follows $PORT"
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert re.search(r"\bPORT=8080\b", env) and re.search(r"\bTHREADS=\d+", env)


def test_worker_image_runs_the_command_line() -> None:
    runtime = last_stage(instructions(ROOT / "infra/docker/Dockerfile"))
    entry = json.loads(next(args for word, args in runtime if word == "ENTRYPOINT"))
    assert entry == ["call-downloader"]
    assert not any(word == "COPY" and "functions" in args for word, args in runtime)


def test_ui_image_serves_the_gateway_config() -> None:
    instrs = instructions(ROOT / "frontend/Dockerfile")
    runtime = last_stage(instrs)
    copies = [args for word, args in runtime if word == "COPY"]
    assert any("frontend/nginx.conf /etc/nginx/templates/" in c for c in copies)
    assert any("--from=build" in c and "/usr/share/nginx/html" in c for c in copies)
    assert any(word == "RUN" and "npm ci" in args for word, args in instrs), "locked install"


def test_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".env", ".git", ".venv", ".tools", ".data", "node_modules", "**/node_modules"):
        assert entry in ignored, f".dockerignore should exclude {entry}"
