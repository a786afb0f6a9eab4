#!/usr/bin/env bash
# The one test command (`make test`): installs what is missing, starts the local Kafka broker,
# runs ruff, mypy and pytest, and stops the broker it started. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/install-prometheus.sh
scripts/install-deploy-tools.sh

started_broker=0
if ! deploy/dev/kafka.sh status >/dev/null 2>&1; then
  started_broker=1
fi
stop_broker() {
  if [ "$started_broker" = 1 ]; then deploy/dev/kafka.sh stop || true; fi
}
trap stop_broker EXIT
bootstrap=$(deploy/dev/kafka.sh start | tail -n 1)

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy cdr_connector
CDR_TEST_KAFKA_BOOTSTRAP="$bootstrap" .venv/bin/pytest "$@"
