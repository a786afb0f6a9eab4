#!/usr/bin/env bash
# `make demo`: the local broker, the simulator with live traffic, and the connector with the
# embedded default settings (deploy/dev/demo.toml); prints records as they are committed, until
# interrupted (or for DEMO_SECONDS seconds), then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
mkdir -p deploy/dev/.run
bin=.venv/bin/cdr-connector
export CDR_CONFIG=deploy/dev/demo.toml
pids=()
started_broker=0
deploy/dev/kafka.sh status >/dev/null 2>&1 || started_broker=1
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_broker" = 1 ]; then deploy/dev/kafka.sh stop >/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "starting Kafka..."
deploy/dev/kafka.sh start | tail -n 1
echo "starting the simulator on 127.0.0.1:18080 (20 calls/s, 2000 records of backlog)..."
"$bin" simulate --port 18080 --appid demo --accesskey demo-secret --rate 20 --backlog 2000 --backlog-span 3600 \
  --timezone Asia/Shanghai >deploy/dev/.run/simulator.log 2>&1 &
pids+=($!)
echo "starting the connector (log: deploy/dev/.run/connector.log, metrics: http://127.0.0.1:19464/metrics)..."
"$bin" run >deploy/dev/.run/connector.log 2>&1 &
pids+=($!)
echo "records committed to cdr.calls (Ctrl-C to stop):"
tail_args=(--from-beginning)
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout "$DEMO_SECONDS" "$bin" tail "${tail_args[@]}" || true
else
  "$bin" tail "${tail_args[@]}"
fi
