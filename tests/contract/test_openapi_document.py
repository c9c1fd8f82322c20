"""The API description (shared/call_downloader/api/openapi.yaml) against the code: every route
the routers register is documented and every documented operation is served, by the function
the gateways send it to; the document is valid OpenAPI 3.1 and is served without sign-in;
the webhook payload Call Downloader sends matches its documented JSON Schema."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# What the functions serve beside their routers (observability.endpoints.install), which the
# make run gateway and each function container answer too.
OPERATIONAL = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    from call_downloader.api.openapi import DOCUMENT_PATH

    return yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))


def routers() -> dict[str, Any]:
    from call_downloader.api.calls import router as calls
    from call_downloader.api.ingest import router as ingest
    from call_downloader.security.api import router as auth

    return {"ingest": ingest, "auth": auth, "calls": calls}


def template(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path template: `<call_id>` -> `{call_id}`."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def registered() -> dict[tuple[str, str], set[str]]:
    """(method, path template) -> the functions whose router declares it."""
    found: dict[tuple[str, str], set[str]] = {}
    for name, router in routers().items():
        for rule, methods in router.declared:
            for method in methods:
                found.setdefault((method.upper(), template(rule)), set()).add(name)
    return found


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_no_key_is_left_without_a_value(document: dict[str, Any]) -> None:
    # An unquoted comma or colon in a YAML flow mapping (`{description: a, b}`) silently
    # makes a key of its own; JSON Schema ignores unknown keywords, so only this sees it.
    empty: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None:
                    empty.append(f"{where}/{key}")
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(document, "")
    assert empty == []


def test_every_registered_route_is_documented(document: dict[str, Any]) -> None:
    missing = set(registered()) | OPERATIONAL
    missing -= documented(document)
    assert sorted(missing) == [], "routes the code serves that openapi.yaml does not describe"


def test_every_documented_operation_is_served(document: dict[str, Any]) -> None:
    unserved = documented(document) - set(registered()) - OPERATIONAL
    assert sorted(unserved) == [], "operations openapi.yaml describes that no router serves"


def test_the_gateways_send_each_operation_to_the_function_that_serves_it(
    document: dict[str, Any],
) -> None:
    from call_downloader.server.gateway import route

    owners = registered()
    wrong = []
    for method, path in sorted(documented(document) - OPERATIONAL):
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        if route(method, concrete) not in owners[(method, path)]:
            wrong.append((method, path, route(method, concrete), owners[(method, path)]))
    assert wrong == []


def test_every_operation_names_the_roles_it_admits(document: dict[str, Any]) -> None:
    roles = set(document["components"]["schemas"]["Role"]["enum"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            admitted = operation.get("x-roles")
            assert isinstance(admitted, list), f"{method.upper()} {path} has no x-roles"
            assert set(admitted) <= roles
            public = operation.get("security") == [] or {} in operation.get("security", [None])
            assert bool(admitted) != public or path == "/api/v1/auth/logout", (
                f"{method.upper()} {path}: roles and security disagree"
            )
            if admitted:
                assert "admin" in admitted  # admin always passes (security.identity.require)
                # The description says it to people (Swagger UI shows no extensions): the same.
                said = re.match(r"Roles: ([a-z, ]+)", operation["description"])
                assert said, f"{method.upper()} {path}: the description names no roles"
                assert set(re.findall(r"[a-z]+", said[1])) == set(admitted), f"{method} {path}"


def test_the_document_is_served_without_sign_in(database_url, db, document) -> None:
    import functions_framework

    app = functions_framework.create_app(
        target="calls", source=str(ROOT / "functions" / "calls" / "main.py")
    )
    answer = app.test_client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert json.loads(answer.get_data()) == document
    assert app.test_client().get("/api/v1/openapi.json?x=1").status_code == 400


def schema_validator(document: dict[str, Any], name: str) -> Any:
    """A JSON Schema 2020-12 validator of `components.schemas[name]`, its $refs resolved
    inside the document."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(document))
    schema = {"$ref": f"urn:openapi#/components/schemas/{name}"}
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def test_the_webhook_payload_matches_its_schema(document: dict[str, Any]) -> None:
    from call_downloader.pipeline.deliver import webhook_body

    call = SimpleNamespace(
        id=uuid.uuid4(),
        external_id="call-42",
        duration_seconds=73.4,
        format="mp3",
        size_bytes=587520,
        sha256="ab" * 32,
        received_at=datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        metadata_={"agent": "olga"},
    )
    payload = json.loads(webhook_body(call, {"transcript": "hello"}))
    validator = schema_validator(document, "WebhookPayload")
    assert list(validator.iter_errors(payload)) == []
    # The schema is strict enough to notice a renamed field.
    payload["call"]["ext_id"] = payload["call"].pop("external_id")
    assert list(validator.iter_errors(payload)) != []


def test_the_published_webhook_schema_is_the_documents(document: dict[str, Any]) -> None:
    from call_downloader.api.openapi import webhook_payload_schema

    published = json.loads((ROOT / "docs" / "webhook-payload.schema.json").read_text())
    assert published == webhook_payload_schema(), (
        "docs/webhook-payload.schema.json is stale: "
        "python -m call_downloader.api.openapi webhook-schema > docs/webhook-payload.schema.json"
    )


def test_the_formats_are_the_ones_the_product_recognises(document: dict[str, Any]) -> None:
    from call_downloader.audio.formats import FORMATS

    enum = document["components"]["schemas"]["CallFacts"]["properties"]["format"]["enum"]
    assert enum == [*FORMATS, None]
