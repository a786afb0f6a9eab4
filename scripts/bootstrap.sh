#!/usr/bin/env bash
# Creates (or reuses) .venv and installs the project with its dev extra; reinstalls only when
# pyproject.toml, setup.py or a compiled module's source changed (an editable install keeps
# the mypyc-built writers next to their source, and a stale build would shadow an edit).
# Everything the tests need is installed from here, nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "cdr-connector needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cdr-connector-installed
compiled="cdr_connector/bill_writer.py cdr_connector/batch_writer.py"
# shellcheck disable=SC2086  # the list splits into its files
want=$(cat pyproject.toml setup.py $compiled | sha256sum | cut -d' ' -f1)
# A checkout may rewrite a source with the same content: an extension older than it is
# rebuilt too, as the writers' tests require.
stale=""
for source in $compiled; do
  module=$(basename "$source" .py)
  stale+=$(find cdr_connector -maxdepth 1 -name "$module.*.so" ! -newer "$source")
done
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ -n "$stale" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # The build's own warnings (setuptools on editable installs) only matter when it fails.
  if ! .venv/bin/python -m pip install --quiet -e '.[dev]' >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
