"""Helpers of the deployment tests (tests/deploy): paths, the function table, running the
tools, reading YAML through the tools' own Python. Fixtures are in conftest.py."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"
TOOLS_PY = TOOLS / "venv" / "bin" / "python"
CHART = ROOT / "k8s" / "helm" / "call-downloader"
CI_VALUES = CHART / "ci" / "test-values.yaml"
PLAIN_VALUES = ROOT / "k8s" / "manifests" / "values.yaml"
# The eventing-rabbitmq CRDs live in the shared folder beside the repository (../shared in
# CI as on a developer's machine); K8S_SCHEMAS_DIR overrides.
CRD_DIR = Path(os.environ.get("K8S_SCHEMAS_DIR", ROOT.parent / "shared" / "k8s-schemas"))
# The Kubernetes versions the chart supports (Chart.yaml kubeVersion) and the newest the
# tools know: built-in objects must validate against both.
K8S_VERSIONS = ("1.28.0", "1.35.0")

# The functions the product has (the table), with their functions-framework target
# and signature type. Folders that appear later join through `function_names()`.
EXPECTED_FUNCTIONS: dict[str, tuple[str, str]] = {
    "ingest": ("ingest", "http"),
    "auth": ("auth", "http"),
    "calls": ("calls", "http"),
    "analyze-duration": ("analyze_duration", "cloudevent"),
    "call-ai": ("call_ai", "cloudevent"),
    "deliver": ("deliver", "cloudevent"),
}


def function_names() -> list[str]:
    """Every function: the folders under functions/ now, plus the expected ones."""
    folders = {
        p.name
        for p in (ROOT / "functions").iterdir()
        if p.is_dir() and not p.name.startswith((".", "_"))
    }
    return sorted(folders | set(EXPECTED_FUNCTIONS))


def _decorated_functions(main: Path) -> dict[str, str]:
    """{python function name: 'http' | 'cloudevent'} for functions_framework decorators."""
    kinds = {"http": "http", "cloud_event": "cloudevent"}
    found: dict[str, str] = {}
    for node in ast.parse(main.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
            if name in kinds:
                found[node.name] = kinds[name]
    return found


def function_spec(name: str) -> tuple[str, str]:
    """(target, signature type) of a function: from its main.py when it exists (the code is
    the truth), else from the expected table."""
    main = ROOT / "functions" / name / "main.py"
    expected = EXPECTED_FUNCTIONS.get(name)
    if main.exists():
        decorated = _decorated_functions(main)
        target = expected[0] if expected else name.replace("-", "_")
        if target in decorated:
            return target, decorated[target]
        if len(decorated) == 1:
            return next(iter(decorated.items()))
    if expected:
        return expected
    raise AssertionError(f"functions/{name}: no main.py with a functions_framework target")


def cloudevent_functions() -> list[str]:
    return [n for n in function_names() if function_spec(n)[1] == "cloudevent"]


def http_functions() -> list[str]:
    return [n for n in function_names() if function_spec(n)[1] == "http"]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run([str(c) for c in cmd], check=False, **kwargs)


def yaml_docs(source: Path | str) -> list[dict]:
    """The YAML documents of a file (Path) or of a text (str), parsed by the tools' PyYAML."""
    if isinstance(source, Path):
        proc = run([TOOLS_PY, ROOT / "infra" / "tools" / "yaml2json.py", source])
    else:
        proc = run([TOOLS_PY, ROOT / "infra" / "tools" / "yaml2json.py"], input=source)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def helm_template(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            tools / "helm",
            "template",
            "call-downloader",
            CHART,
            "--namespace",
            "call-downloader",
            *args,
        ]
    )


def compose_required_variables() -> list[str]:
    """Variables docker-compose.yml refuses to run without (${VAR:?...})."""
    import re

    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)))


def write_env_file(path: Path, leave_out: str | None = None) -> Path:
    lines = [
        # A URL where one is expected (Alertmanager checks its webhook's).
        f"{var}=https://hooks.example.test/{secrets.token_hex(8)}"
        if var.endswith("_URL")
        else f"{var}=test-{secrets.token_hex(8)}"
        for var in compose_required_variables()
        if var != leave_out
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def compose(tools: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing from the developer's shell fills a missing variable.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return run(
        [
            tools / "docker-compose",
            "--project-directory",
            ROOT,
            "--env-file",
            env_file,
            "-f",
            ROOT / "docker-compose.yml",
            *args,
        ],
        env=env,
    )


def objects_of(objects: list[dict], kind: str, api_prefix: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["apiVersion"].startswith(api_prefix)]


def knative_services(objects: list[dict]) -> dict[str, dict]:
    """{function name: Knative Service}, by the chart's call-downloader/function label."""
    return {
        o["metadata"]["labels"]["call-downloader/function"]: o
        for o in objects_of(objects, "Service", "serving.knative.dev/")
    }


def rabbitmq_sources(objects: list[dict]) -> dict[str, dict]:
    return {
        o["metadata"]["labels"]["call-downloader/function"]: o
        for o in objects_of(objects, "RabbitmqSource", "sources.knative.dev/")
    }


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def last_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instrs) if word == "FROM"]
    return instrs[starts[-1] :]


# -- a function started as its image starts it ----------------------------------------------

# The environment running the tests has the library and functions-framework installed.
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 90  # seconds: an upper bound for start-up, not a performance assertion


def image_command(name: str) -> tuple[list[str], dict[str, str]]:
    """The CMD and the ENV of functions/<name>/Dockerfile's runtime stage."""
    runtime = last_stage(instructions(ROOT / "functions" / name / "Dockerfile"))
    cmd = json.loads(next(args for word, args in runtime if word == "CMD"))
    env: dict[str, str] = {}
    for word, args in runtime:
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return cmd, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serving_function(name: str, tmp_path: Path, **env_overrides: str) -> Iterator[str]:
    """Run functions/<name> with its image's command line and environment (the test
    settings of tests/conftest.py, `env_overrides` on top) until /healthz answers; yields
    its base URL and stops it afterwards."""
    cmd, image_env = image_command(name)
    port = free_port()
    (tmp_path / "prometheus").mkdir(exist_ok=True)
    env = {
        **os.environ,  # the test settings (tests/conftest.py): test database, namespace
        **{k: v for k, v in image_env.items() if k not in ("PATH", "DATA_DIR")},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        # The image's multiprocess metrics folder, but private to this test.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        **env_overrides,
    }
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT / "functions" / name, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"`{' '.join(cmd)}` exited with {proc.returncode}:\n"
                    f"{log.read_text(errors='replace')[-3000:]}"
                )
            try:
                http_get(f"{base}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{name} did not listen on {port}:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
