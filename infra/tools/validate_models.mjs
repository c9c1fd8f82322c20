// Validate the objects of other APIs than Kubernetes' own with the schemas of the
// @kubernetes-models packages (installed in .tools/node by install.sh): Knative (serving,
// eventing, messaging), Gateway API and the Prometheus Operator. Types, enums and required
// fields are checked; the Gateway API and Prometheus Operator models let unknown fields
// pass. Reads a JSON list of objects on stdin; checks every object of those groups; prints
// a JSON report and exits 1 when one is invalid or of a kind this script does not know
// (nothing passes silently).
// Usage: MODELS_DIR=.tools/node/node_modules node validate_models.mjs < objects.json
// (ES modules ignore NODE_PATH: MODELS_DIR says where the packages are.)
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.MODELS_DIR;
// The Knative models are CommonJS, the others ES modules.
const require = createRequire(path.join(modules, "..", "package.json"));
const esm = (spec) => import(pathToFileURL(path.join(modules, spec, "index.js")).href);

const MODELS = {
  "serving.knative.dev/v1": require("@kubernetes-models/knative/serving.knative.dev/v1"),
  "eventing.knative.dev/v1": require("@kubernetes-models/knative/eventing.knative.dev/v1"),
  "messaging.knative.dev/v1": require("@kubernetes-models/knative/messaging.knative.dev/v1"),
  "gateway.networking.k8s.io/v1": await esm("@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1"),
  "monitoring.coreos.com/v1": await esm("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"),
};
const GROUPS = new Set(Object.keys(MODELS).map((api) => api.split("/")[0]));

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const report = { checked: [], errors: [] };
for (const obj of JSON.parse(input)) {
  const api = obj.apiVersion || "";
  if (!GROUPS.has(api.split("/")[0])) continue;
  const label = `${obj.kind}/${(obj.metadata || {}).name} (${api})`;
  const Model = (MODELS[api] || {})[obj.kind];
  if (!Model) {
    report.errors.push(`${label}: no model for this kind`);
    continue;
  }
  try {
    new Model(obj).validate();
    report.checked.push(label);
  } catch (err) {
    report.errors.push(`${label}: ${err.message}`);
  }
}
process.stdout.write(JSON.stringify(report));
process.exitCode = report.errors.length ? 1 : 0;
