// Validate Knative objects with the schemas of @kubernetes-models/knative (installed in
// .tools/node by install.sh). Reads a JSON list of objects on stdin; checks every object
// of a Knative group; prints a JSON report and exits 1 when one is invalid or of a Knative
// kind this script does not know (nothing passes silently).
// Usage: NODE_PATH=.tools/node/node_modules node validate_knative.js < objects.json
"use strict";

const serving = require("@kubernetes-models/knative/serving.knative.dev/v1");
const eventing = require("@kubernetes-models/knative/eventing.knative.dev/v1");
const messaging = require("@kubernetes-models/knative/messaging.knative.dev/v1");

const MODELS = {
  "serving.knative.dev/v1": serving,
  "eventing.knative.dev/v1": eventing,
  "messaging.knative.dev/v1": messaging,
};
const GROUPS = ["serving.knative.dev", "eventing.knative.dev", "messaging.knative.dev"];

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const report = { checked: [], errors: [] };
  for (const obj of JSON.parse(input)) {
    const api = obj.apiVersion || "";
    if (!GROUPS.includes(api.split("/")[0])) continue;
    const label = `${obj.kind}/${(obj.metadata || {}).name} (${api})`;
    const Model = (MODELS[api] || {})[obj.kind];
    if (!Model) {
      report.errors.push(`${label}: no Knative model for this kind`);
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
});
