#!/usr/bin/env bash
# Runs the example after `mvn -B package` (see examples/README.md); arguments: run.sh --help
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAR="$HERE/target/cdr-streams-totals.jar"
if [[ ! -f "$JAR" || ! -f "$HERE/target/classpath.txt" ]]; then
    echo "run.sh: build first: (cd $HERE && mvn -B package)" >&2
    exit 2
fi
exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" -cp "$JAR:$(cat "$HERE/target/classpath.txt")" \
    io.cdrconnector.examples.streams.TotalsApp "$@"
