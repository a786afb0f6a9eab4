#!/usr/bin/env bash
# A Confluent-compatible schema registry (Apicurio Registry, its store in memory) for
# development and the integration tests. It listens on 127.0.0.1 only; the Confluent API is at
# <base URL>/apis/ccompat/v7, with BACKWARD compatibility by default as Confluent's registry has.
#
# Usage: deploy/dev/registry.sh start|stop|status|java
#
#   start   Fetch the registry's ready-to-run bundle from Maven Central (once, cached under
#           deploy/dev/.cache/registry), start it in the background and wait until its
#           Confluent API answers. If a registry started from the same run directory is
#           already up, just report it. The last line on stdout is the base URL
#           (http://127.0.0.1:PORT); progress goes to stderr.
#   stop    Stop the registry (SIGTERM, then SIGKILL after REGISTRY_STOP_TIMEOUT seconds).
#           Exit 0 also when nothing was running. Its schemas are gone with it.
#   status  Print the base URL and exit 0 if the registry runs, else exit 1.
#   java    Print the java binary start would use (Java 21+); exit 1 saying what is missing.
#
# Environment:
#   REGISTRY_PORT            HTTP port (default 18081); management (health) on REGISTRY_PORT+1
#   REGISTRY_RUN_DIR         run directory: pid, logs, temporary files
#                            (default deploy/dev/.run/registry)
#   REGISTRY_START_TIMEOUT   seconds to wait for the registry to answer (default 300: a JVM
#                            on a busy 2-core machine took over 120)
#   REGISTRY_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 30)
#   REGISTRY_HEAP_OPTS       heap options (default "-Xms64m -Xmx384m")
#   REGISTRY_JAVA_HOME       the Java 21+ to run it with. Unset: JAVA_HOME, then java on PATH,
#                            then the JDKs under /usr/lib/jvm: the first that is 21+.
#                            Only the registry runs on it; the Kafka broker keeps its own Java.
set -euo pipefail

APICURIO_VERSION=3.3.3
APICURIO_ARTIFACT="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# Apicurio Registry 3.x is built for Java 21; older JVMs stop with UnsupportedClassVersionError.
JAVA_MIN=21

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="$DEV_DIR/.cache"
DIST_DIR="$CACHE_DIR/registry/apicurio-registry-$APICURIO_VERSION"
RUN_DIR="${REGISTRY_RUN_DIR:-$DEV_DIR/.run/registry}"
PORT="${REGISTRY_PORT:-18081}"
START_TIMEOUT="${REGISTRY_START_TIMEOUT:-300}"
STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-30}"
HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xms64m -Xmx384m}"

log() { echo "registry.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}
# shellcheck source=processes.sh
source "$DEV_DIR/processes.sh"

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65534)); then
    die "REGISTRY_PORT must be a port number below 65535, got '$PORT'"
fi
MANAGEMENT_PORT=$((PORT + 1))
BASE_URL="http://127.0.0.1:$PORT"

# --- Java 21+ ------------------------------------------------------------------------------

# The major version of a java binary (8 for "1.8.0_392", 25 for "25.0.1"), or nothing.
java_major() {
    "$1" -version 2>&1 | sed -n 's/.* version "\([0-9][0-9._]*\).*/\1/p' | head -n 1 |
        awk -F. '{ print ($1 == 1 ? $2 : $1) }'
}

java_candidates() {
    if [[ -n "${REGISTRY_JAVA_HOME:-}" ]]; then
        echo "$REGISTRY_JAVA_HOME/bin/java"
        return
    fi
    [[ -n "${JAVA_HOME:-}" ]] && echo "$JAVA_HOME/bin/java"
    command -v java || true
    find /usr/lib/jvm -mindepth 3 -maxdepth 3 -path '*/bin/java' 2>/dev/null | sort -rV
}

# The first candidate that is Java 21+, or a message naming every one that is not.
find_java() {
    local candidate major seen=()
    while IFS= read -r candidate; do
        [[ -x "$candidate" ]] || {
            seen+=("$candidate (missing)")
            continue
        }
        major="$(java_major "$candidate")"
        if [[ -n "$major" ]] && ((major >= JAVA_MIN)); then
            echo "$candidate"
            return 0
        fi
        seen+=("$candidate (Java ${major:-of unknown version})")
    done < <(java_candidates)
    log "Apicurio Registry $APICURIO_VERSION needs Java $JAVA_MIN or newer, and none was found" \
        "(looked at: ${seen[*]:-no java at all})."
    log "Install a JDK $JAVA_MIN+ (for example Temurin 25 or openjdk-21-jdk) and set" \
        "REGISTRY_JAVA_HOME to it, or put it under /usr/lib/jvm."
    return 1
}

# --- the bundle ----------------------------------------------------------------------------

fetch_bundle() {
    [[ -f "$DIST_DIR/quarkus-run.jar" ]] && return 0
    mkdir -p "$CACHE_DIR/registry"
    (
        exec 8>"$CACHE_DIR/registry/.lock"
        flock -w 900 8 || die "timed out waiting for the lock on $CACHE_DIR/registry"
        [[ -f "$DIST_DIR/quarkus-run.jar" ]] && exit 0
        command -v mvn >/dev/null || die "mvn not found: Maven is needed once to fetch the registry"
        local download="$CACHE_DIR/registry/download"
        rm -rf "$download" "$DIST_DIR.tmp"
        log "fetching Apicurio Registry $APICURIO_VERSION with Maven into $CACHE_DIR/m2 ..."
        local -a mvn_args=(-B -q --strict-checksums -Dmaven.repo.local="$CACHE_DIR/m2"
            "$DEPENDENCY_PLUGIN:copy" -Dartifact="$APICURIO_ARTIFACT"
            -DoutputDirectory="$download")
        # Offline first: the bundle may already be in the local repository.
        if ! mvn -o "${mvn_args[@]}" >"$CACHE_DIR/registry/mvn.log" 2>&1 &&
            ! mvn "${mvn_args[@]}" >"$CACHE_DIR/registry/mvn.log" 2>&1; then
            tail -n 40 "$CACHE_DIR/registry/mvn.log" >&2
            die "Maven could not fetch $APICURIO_ARTIFACT (log: $CACHE_DIR/registry/mvn.log)"
        fi
        mkdir -p "$DIST_DIR.tmp"
        tar -xzf "$download"/apicurio-registry-app-*.tar.gz -C "$DIST_DIR.tmp" ||
            die "unpacking the registry bundle failed"
        [[ -f "$DIST_DIR.tmp/quarkus-run.jar" ]] || die "the bundle has no quarkus-run.jar"
        # Renamed only when complete: an interrupted fetch never looks like a usable bundle.
        mv "$DIST_DIR.tmp" "$DIST_DIR"
        rm -rf "$download"
    )
}

# --- process and port checks ---------------------------------------------------------------

# The pid of the registry started from this run directory, if it is alive.
registry_pid() {
    pid_from_file "$PID_FILE" pid_is_registry
}

# True if the pid is a live java process started with this run directory's marker.
pid_is_registry() {
    java_pid_has_args "$1" "-Dcdr.dev.registry.run-dir=$RUN_DIR"
}

# The Confluent API answers a subject listing once storage is ready.
answers() {
    curl -fsS -o /dev/null --max-time 5 "$BASE_URL/apis/ccompat/v7/subjects" 2>/dev/null
}

wait_ready() {
    local pid="$1" deadline="$2"
    while :; do
        pid_is_registry "$pid" || pid_is_launching "$pid" || return 2
        answers && return 0
        (($(date +%s) < deadline)) || return 1
        sleep 0.5
    done
}

stop_pid() {
    stop_java_pid "$1" pid_is_registry "$STOP_TIMEOUT" registry
}

# --- subcommands ---------------------------------------------------------------------------

launch() {
    local java="$1"
    rm -rf "$RUN_DIR/tmp" "$OUT_FILE"
    mkdir -p "$RUN_DIR/tmp"
    cd "$RUN_DIR"
    # setsid: the registry outlives this script and the test session that ran it. Its stdio
    # goes to a file and fd 9 (the run-dir lock) is closed for it. Without the two host
    # settings Quarkus listens on every interface (the management port on 0.0.0.0:9000).
    # The store is the default in-memory H2 database: every start is empty.
    # shellcheck disable=SC2086 # HEAP_OPTS is a list of options
    setsid "$java" $HEAP_OPTS -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
        -Dcdr.dev.registry.run-dir="$RUN_DIR" -Djava.io.tmpdir="$RUN_DIR/tmp" \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
        -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$MANAGEMENT_PORT" \
        -Dapicurio.rules.global.compatibility=BACKWARD \
        -Dapicurio.storage.snapshot.location="$RUN_DIR/tmp" \
        -Dapicurio.import.work-dir="$RUN_DIR/tmp" \
        -jar "$DIST_DIR/quarkus-run.jar" </dev/null >"$OUT_FILE" 2>&1 9>&- &
    echo $! >"$PID_FILE"
    echo "$BASE_URL" >"$RUN_DIR/registry.url"
}

cmd_start() {
    local java pid deadline rc
    exec 9>"$RUN_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for the lock on $RUN_DIR"
    if pid="$(registry_pid)"; then
        [[ "$(cat "$RUN_DIR/registry.url" 2>/dev/null)" == "$BASE_URL" ]] ||
            die "a registry from $RUN_DIR already runs on another port (pid $pid); stop it first"
        deadline=$(($(date +%s) + START_TIMEOUT))
        if wait_ready "$pid" "$deadline"; then
            log "registry already running (pid $pid)"
            echo "$BASE_URL"
            return 0
        fi
        log "registry $pid does not answer; replacing it"
        stop_pid "$pid"
    fi
    java="$(find_java)" || exit 1
    fetch_bundle
    command -v curl >/dev/null || die "curl not found: it is the registry's readiness probe"
    local port
    for port in "$PORT" "$MANAGEMENT_PORT"; do
        ! port_open "$port" ||
            die "port $port on 127.0.0.1 is already in use by another process (set REGISTRY_PORT)"
    done
    launch "$java"
    pid="$(cat "$PID_FILE")"
    log "registry starting on $java (pid $pid, output in $OUT_FILE)"
    deadline=$(($(date +%s) + START_TIMEOUT))
    rc=0
    wait_ready "$pid" "$deadline" || rc=$?
    if ((rc != 0)); then
        tail -n 40 "$OUT_FILE" >&2 || true
        ((rc == 2)) || stop_pid "$pid"
        rm -f "$PID_FILE"
        die "the registry did not answer on $BASE_URL within ${START_TIMEOUT}s"
    fi
    log "registry ready on $BASE_URL (Confluent API: $BASE_URL/apis/ccompat/v7)"
    echo "$BASE_URL"
}

cmd_stop() {
    local pid
    exec 9>"$RUN_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for the lock on $RUN_DIR"
    if pid="$(registry_pid)"; then
        log "stopping registry $pid"
        stop_pid "$pid"
    else
        log "no registry running from $RUN_DIR"
    fi
    rm -f "$PID_FILE" "$RUN_DIR/registry.url"
}

cmd_status() {
    local pid
    BASE_URL="$(cat "$RUN_DIR/registry.url" 2>/dev/null || echo "$BASE_URL")"
    if pid="$(registry_pid)" && answers; then
        echo "$BASE_URL"
        return 0
    fi
    log "no registry answering from $RUN_DIR${pid:+ (pid $pid runs)}"
    return 1
}

mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
PID_FILE="$RUN_DIR/registry.pid"
OUT_FILE="$RUN_DIR/registry.out"

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
java) find_java ;;
*)
    echo "usage: $0 start|stop|status|java" >&2
    exit 2
    ;;
esac
