#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker + controller) for development
# and the integration tests. It listens on 127.0.0.1 only.
#
# Usage: deploy/dev/kafka.sh start|stop|status
#
#   start   Resolve the broker's jars (Maven, cached under deploy/dev/.cache), format fresh
#           storage, start the broker in the background and wait until it answers a
#           metadata request. If a broker started from the same run directory is already
#           up, just report it. The last line on stdout is the bootstrap address
#           (127.0.0.1:PORT); progress goes to stderr.
#   stop    Stop the broker (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds).
#           Exit 0 also when nothing was running.
#   status  Print the bootstrap address and exit 0 if the broker runs, else exit 1.
#
# Environment:
#   KAFKA_PORT           client port (default 19092); the controller listens on KAFKA_PORT+1
#   KAFKA_RUN_DIR        run directory: config, data, pid and logs (default deploy/dev/.run);
#                        a second run directory with another port gives an independent broker
#   KAFKA_START_TIMEOUT  seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_HEAP_OPTS      broker heap options (default "-Xms256m -Xmx512m")
#   JAVA_HOME            Java 17+ to use (default: java on PATH)
set -euo pipefail

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="$DEV_DIR/.cache"
RUN_DIR="${KAFKA_RUN_DIR:-$DEV_DIR/.run}"
PORT="${KAFKA_PORT:-19092}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

POM="$DEV_DIR/pom.xml"
CLASSPATH_FILE="$CACHE_DIR/classpath.txt"
STAMP_FILE="$CACHE_DIR/classpath.sha256"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# Short-lived tool JVMs (format, readiness probe): start fast, stay small.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)

log() { echo "kafka.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}
# shellcheck source=processes.sh
source "$DEV_DIR/processes.sh"

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65534)); then
    die "KAFKA_PORT must be a port number below 65535, got '$PORT'"
fi
CONTROLLER_PORT=$((PORT + 1))
ADDRESS="127.0.0.1:$PORT"

mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
PID_FILE="$RUN_DIR/broker.pid"
ADDR_FILE="$RUN_DIR/broker.addr"
PROPS="$RUN_DIR/server.properties"
DATA_DIR="$RUN_DIR/data"

now() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Serialise start/stop on one run directory (fd 9; never inherited by the broker).
lock_run_dir() {
    exec 9>"$RUN_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for the lock on $RUN_DIR"
}

# --- jars ------------------------------------------------------------------------------

classpath_is_current() {
    [[ -s "$CLASSPATH_FILE" && -s "$STAMP_FILE" ]] || return 1
    [[ "$(cat "$STAMP_FILE")" == "$(sha256sum "$POM" | cut -d' ' -f1)" ]] || return 1
    local jar
    while IFS= read -r jar; do
        [[ -f "$jar" ]] || return 1
    done < <(tr ':' '\n' <"$CLASSPATH_FILE")
}

resolve_jars() {
    mkdir -p "$CACHE_DIR"
    (
        exec 8>"$CACHE_DIR/.lock"
        flock -w 600 8 || die "timed out waiting for the lock on $CACHE_DIR"
        classpath_is_current && exit 0
        command -v mvn >/dev/null || die "mvn not found: Maven is needed once to fetch the Kafka jars"
        log "resolving the Kafka jars with Maven into $CACHE_DIR/m2 ..."
        local -a mvn_args=(-B -q -f "$POM" -Dmaven.repo.local="$CACHE_DIR/m2"
            dependency:build-classpath -Dmdep.includeScope=runtime
            -Dmdep.outputFile="$CLASSPATH_FILE.tmp")
        # Offline first: everything may already be in the cache.
        if ! mvn -o "${mvn_args[@]}" >"$CACHE_DIR/mvn.log" 2>&1 &&
            ! mvn "${mvn_args[@]}" >"$CACHE_DIR/mvn.log" 2>&1; then
            tail -n 40 "$CACHE_DIR/mvn.log" >&2
            die "Maven could not resolve the Kafka jars (log: $CACHE_DIR/mvn.log)"
        fi
        mv "$CLASSPATH_FILE.tmp" "$CLASSPATH_FILE"
        sha256sum "$POM" | cut -d' ' -f1 >"$STAMP_FILE"
    )
    CLASSPATH="$(cat "$CLASSPATH_FILE")"
    export CLASSPATH
}

# --- process and port checks -------------------------------------------------------------

# The pid of the broker started from this run directory, if it is alive.
broker_pid() {
    pid_from_file "$PID_FILE" pid_is_broker
}

# True if the pid is a live java process running kafka.Kafka with this run directory's config.
pid_is_broker() {
    java_pid_has_args "$1" kafka.Kafka "$PROPS"
}

# Brokers of this run directory whose pid file was lost.
orphan_pids() {
    local pid
    for pid in $(pgrep -f -- "kafka\.Kafka $PROPS" || true); do
        pid_is_broker "$pid" && echo "$pid"
    done
    return 0
}

# Ask the broker for its topics (a metadata request) with Kafka's own TopicCommand.
probe() {
    local port="$1"
    timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" \
        -Dlog4j2.configurationFile="$RUN_DIR/log4j2-tools.properties" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
        --command-config "$RUN_DIR/probe.properties" >>"$RUN_DIR/probe.log" 2>&1
}

tail_logs() {
    local f
    for f in "$RUN_DIR/broker.out" "$RUN_DIR/broker.log"; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

# --- configuration -------------------------------------------------------------------------

write_config() {
    cat >"$PROPS" <<EOF
# Written by deploy/dev/kafka.sh on every fresh start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR

# Single node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true

# Transactions: time out abandoned ones quickly, allow the usual producer timeouts.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
transaction.max.timeout.ms=900000

# Small footprint.
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=16777216
EOF

    cat >"$RUN_DIR/log4j2.properties" <<EOF
status = warn
name = kafka-dev-broker
# Keep logging through the broker's own shutdown hook (each event is flushed as written).
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $RUN_DIR/broker.log
appender.file.filePattern = $RUN_DIR/broker.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF

    cat >"$RUN_DIR/log4j2-tools.properties" <<EOF
status = warn
name = kafka-dev-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF

    cat >"$RUN_DIR/probe.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=8000
EOF
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

# --- subcommands ---------------------------------------------------------------------------

wait_ready() {
    local pid="$1" port="$2" deadline="$3"
    while :; do
        pid_is_broker "$pid" || pid_is_launching "$pid" || return 2
        if port_open "$port" && probe "$port"; then
            return 0
        fi
        (($(date +%s) < deadline)) || return 1
        sleep 0.5
    done
}

stop_pid() {
    stop_java_pid "$1" pid_is_broker "$STOP_TIMEOUT" broker
}

stop_all() {
    local pid pids
    pids="$(
        broker_pid || true
        orphan_pids
    )"
    pids="$(echo "$pids" | sort -u | grep -E '^[0-9]+$' || true)"
    if [[ -z "$pids" ]]; then
        rm -f "$PID_FILE" "$ADDR_FILE"
        return 1
    fi
    for pid in $pids; do
        log "stopping broker $pid ($(cat "$ADDR_FILE" 2>/dev/null || echo "$RUN_DIR"))"
        stop_pid "$pid"
    done
    rm -f "$PID_FILE" "$ADDR_FILE"
}

cmd_start() {
    local t0 pid running_addr deadline rc
    t0="$(now)"
    lock_run_dir

    if pid="$(broker_pid)"; then
        running_addr="$(cat "$ADDR_FILE" 2>/dev/null || echo "$ADDRESS")"
        if [[ -n "${KAFKA_PORT:-}" && "$running_addr" != "$ADDRESS" ]]; then
            die "a broker from $RUN_DIR already runs on ${running_addr:-an unknown port} (pid $pid); stop it first or use another KAFKA_RUN_DIR"
        fi
        resolve_jars
        deadline=$(($(date +%s) + START_TIMEOUT))
        if wait_ready "$pid" "${running_addr##*:}" "$deadline"; then
            log "broker already running (pid $pid)"
            echo "$running_addr"
            return 0
        fi
        log "broker $pid does not answer; replacing it with a fresh one"
        stop_all || true
    else
        # A dead broker's pid file, or one running without a pid file: clear both.
        stop_all || true
    fi

    resolve_jars
    command -v "$JAVA" >/dev/null || die "java not found (Kafka needs Java 17+)"
    if port_open "$PORT"; then
        die "port $PORT on 127.0.0.1 is already in use by another process (set KAFKA_PORT)"
    fi
    if port_open "$CONTROLLER_PORT"; then
        die "port $CONTROLLER_PORT on 127.0.0.1 is already in use by another process (set KAFKA_PORT)"
    fi

    # Every fresh start gets fresh storage: stale state never leaks into a new run.
    rm -rf "$DATA_DIR"
    rm -f "$RUN_DIR"/broker.log* "$RUN_DIR/broker.out" "$RUN_DIR/probe.log" "$RUN_DIR/format.log"
    mkdir -p "$DATA_DIR"
    write_config

    if ! "$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$RUN_DIR/log4j2-tools.properties" \
        kafka.tools.StorageTool format --cluster-id "$(new_cluster_id)" --config "$PROPS" \
        >"$RUN_DIR/format.log" 2>&1; then
        cat "$RUN_DIR/format.log" >&2
        die "formatting the KRaft storage in $DATA_DIR failed"
    fi

    # setsid: the broker outlives this script and the terminal or test session that ran it.
    # Its stdio goes to files and fd 9 (the run-dir lock) is closed for it.
    # shellcheck disable=SC2086 # HEAP_OPTS is a list of options
    setsid "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$RUN_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$RUN_DIR" \
        kafka.Kafka "$PROPS" </dev/null >"$RUN_DIR/broker.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$ADDRESS" >"$ADDR_FILE"
    log "broker starting (pid $pid, logs in $RUN_DIR/broker.log)"

    deadline=$(($(date +%s) + START_TIMEOUT))
    rc=0
    wait_ready "$pid" "$PORT" "$deadline" || rc=$?
    if ((rc != 0)); then
        tail_logs
        if ((rc == 2)); then
            rm -f "$PID_FILE" "$ADDR_FILE"
            die "the broker exited during start-up"
        fi
        stop_all || true
        die "the broker did not answer on $ADDRESS within ${START_TIMEOUT}s"
    fi
    log "broker ready on $ADDRESS after $(elapsed_since "$t0")s"
    echo "$ADDRESS"
}

cmd_stop() {
    lock_run_dir
    if ! stop_all; then
        log "no broker running from $RUN_DIR"
    fi
    return 0
}

cmd_status() {
    local pid addr
    if pid="$(broker_pid)"; then
        addr="$(cat "$ADDR_FILE" 2>/dev/null || echo "$ADDRESS")"
        if port_open "${addr##*:}"; then
            echo "$addr"
            return 0
        fi
        log "broker process $pid is up but $addr does not accept connections"
        return 1
    fi
    log "no broker running from $RUN_DIR"
    return 1
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
