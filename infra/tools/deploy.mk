# Deployment targets, included by the Makefile (`-include infra/tools/deploy.mk`).
#   make deploy-tools   install the pinned validation tools into .tools/ (no Docker needed)
#   make deploy-render  re-render k8s/manifests/ from the Helm chart
#   make deploy-check   the deployment tests (tests/deploy): compose, hadolint, helm,
#                       kubernetes-validate, Knative and eventing-rabbitmq schemas, drift
#   make up / down      run / stop the whole product with docker compose (needs Docker and
#                       a filled-in .env; see docs/deploy.md)
COMPOSE ?= docker compose

.PHONY: deploy-tools deploy-render deploy-check up down

deploy-tools:
	bash infra/tools/install.sh

deploy-render: deploy-tools
	bash infra/tools/render-manifests.sh

deploy-check: install deploy-tools
	$(VENV)/bin/pytest tests/deploy -q

up:
	@test -f .env || { echo "No .env: copy .env.example to .env and fill in the secrets (docs/deploy.md)." >&2; exit 1; }
	$(COMPOSE) up --detach --build --wait

down:
	$(COMPOSE) down
