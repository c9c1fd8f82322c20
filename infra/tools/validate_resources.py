"""Validate the custom resources of rendered manifests, offline.

Reads a JSON list of Kubernetes objects on stdin (see yaml2json.py) and checks:
- objects whose kind a CustomResourceDefinition in --crd-dir defines (eventing-rabbitmq's
  RabbitmqSource, RabbitmqBrokerConfig) against that CRD's published openAPIV3Schema,
  unknown fields rejected;
- the pod template of each Knative Service, strictly, as a Kubernetes Pod (Knative's own
  template fields removed), so a misspelt container field cannot pass unseen.
Built-in kinds are left to `kubernetes-validate --strict`; Knative's, the Gateway API's and
the Prometheus Operator's to validate_models.mjs. Prints a JSON report; exits 1 when an
object is invalid or when an object of a custom kind has no schema here or there (nothing
passes silently).
Usage: python validate_resources.py --crd-dir DIR --k8s-version 1.35.0 < objects.json
"""

import argparse
import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KNATIVE_GROUPS = ("serving.knative.dev", "eventing.knative.dev", "messaging.knative.dev")
# Validated by validate_models.mjs (Gateway API, Prometheus Operator).
MODEL_GROUPS = ("gateway.networking.k8s.io", "monitoring.coreos.com")
# Fields of a Knative revision template's spec that a Pod does not have.
KNATIVE_ONLY_SPEC_FIELDS = (
    "containerConcurrency",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
)


def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def strict(schema: object) -> object:
    """Reject unknown fields, as the API server does under strict field validation: every
    object schema with `properties` gets additionalProperties: false (unless it keeps
    unknown fields or already says what extra properties may be)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def builtin(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group in MODEL_GROUPS:
        return False
    return group == "" or group.endswith(".k8s.io") or "." not in group


def knative_pod(obj: dict) -> dict:
    template = obj.get("spec", {}).get("template", {})
    spec = {k: v for k, v in template.get("spec", {}).items() if k not in KNATIVE_ONLY_SPEC_FIELDS}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": obj["metadata"]["name"], **template.get("metadata", {})},
        "spec": spec,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crd-dir", type=Path, required=True)
    parser.add_argument("--k8s-version", default="1.35.0")
    args = parser.parse_args()
    if not args.crd_dir.is_dir():
        print(json.dumps({"errors": [f"no CRD folder at {args.crd_dir}"]}))
        return 1
    schemas = load_crd_schemas(args.crd_dir)
    report: dict[str, list] = {"checked": [], "errors": []}
    for obj in json.load(sys.stdin):
        api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        name = obj.get("metadata", {}).get("name", "?")
        label = f"{kind}/{name} ({api})"
        if (api, kind) in schemas:
            validator = jsonschema.Draft7Validator(schemas[(api, kind)])
            errs = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            report["checked"].append({"object": label, "by": "crd-schema"})
            report["errors"].extend(
                f"{label}: {'/'.join(map(str, e.path))}: {e.message}" for e in errs
            )
        elif api == "serving.knative.dev/v1" and kind == "Service":
            try:
                kubernetes_validate.validate(knative_pod(obj), args.k8s_version, strict=True)
                report["checked"].append({"object": label, "by": "pod-template-strict"})
            except kubernetes_validate.ValidationError as exc:
                report["errors"].append(f"{label}: pod template: {exc.message}")
        elif api.split("/")[0] in KNATIVE_GROUPS + MODEL_GROUPS or builtin(api):
            continue  # Knative's and the other models' schemas (node), kubernetes-validate's
        else:
            report["errors"].append(f"{label}: no schema to validate this kind against")
    print(json.dumps(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
