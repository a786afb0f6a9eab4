#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, starts the local Kafka broker
# and schema registry, runs ruff, mypy and pytest, and stops what it started. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The schema registry needs Java 21+; say so before anything is installed or started.
if ! deploy/dev/registry.sh java >/dev/null; then
  echo "make test: no Java 21+ for the schema registry (deploy/dev/registry.sh); see above" >&2
  exit 1
fi

scripts/bootstrap.sh
scripts/install-prometheus.sh
scripts/install-deploy-tools.sh

started_broker=0
if ! deploy/dev/kafka.sh status >/dev/null 2>&1; then
  started_broker=1
fi
started_registry=0
if ! deploy/dev/registry.sh status >/dev/null 2>&1; then
  started_registry=1
fi
stop_services() {
  if [ "$started_registry" = 1 ]; then deploy/dev/registry.sh stop || true; fi
  if [ "$started_broker" = 1 ]; then deploy/dev/kafka.sh stop || true; fi
}
trap stop_services EXIT
bootstrap=$(deploy/dev/kafka.sh start | tail -n 1)
registry=$(deploy/dev/registry.sh start | tail -n 1)

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy cdr_connector
CDR_TEST_KAFKA_BOOTSTRAP="$bootstrap" CDR_TEST_REGISTRY_URL="$registry/apis/ccompat/v7" \
  .venv/bin/pytest "$@"
