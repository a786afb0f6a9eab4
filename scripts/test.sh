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

started_broker=0
if ! deploy/dev/kafka.sh status >/dev/null 2>&1; then
  started_broker=1
fi
started_registry=0
if ! deploy/dev/registry.sh status >/dev/null 2>&1; then
  started_registry=1
fi
stop_services() {
  wait || true  # a start still under way finishes before anything is stopped
  if [ "$started_registry" = 1 ]; then deploy/dev/registry.sh stop || true; fi
  if [ "$started_broker" = 1 ]; then deploy/dev/kafka.sh stop || true; fi
  rm -rf "$starts"
}
starts=$(mktemp -d)
trap stop_services EXIT

# The broker and then the registry start (Maven, then a JVM each; one after the other, since
# they share a Maven repository) while the Python environment and the tools are installed and
# the linters run: on a fresh clone that overlap saves about a minute.
(
  deploy/dev/kafka.sh start >"$starts/kafka" 2>"$starts/log" &&
    deploy/dev/registry.sh start >"$starts/registry" 2>>"$starts/log"
) &
services=$!

scripts/bootstrap.sh
scripts/install-prometheus.sh
scripts/install-deploy-tools.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy cdr_connector

if ! wait "$services"; then
  cat "$starts/log" >&2
  echo "make test: the broker or the registry did not start (output above)" >&2
  exit 1
fi
cat "$starts/log" >&2
bootstrap=$(tail -n 1 "$starts/kafka")
registry=$(tail -n 1 "$starts/registry")
CDR_TEST_KAFKA_BOOTSTRAP="$bootstrap" CDR_TEST_REGISTRY_URL="$registry/apis/ccompat/v7" \
  .venv/bin/pytest "$@"
