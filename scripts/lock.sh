#!/usr/bin/env bash
# Regenerates the image's lock files from pyproject.toml, every pin with the sha256 of each of
# its published files, so the Dockerfile's `pip install --require-hashes` installs the same
# bytes on every build:
#   requirements.lock        the runtime dependencies ([project] dependencies, extras included)
#   requirements-build.lock  what building the project needs ([build-system] requires: setuptools,
#                            wheel and the mypy that compiles the bill and batch writers)
# Resolved for the image's Python (the PYTHON_IMAGE tag of the Dockerfile) on Linux, not for the
# Python running this script. uv, pinned, runs from a throw-away virtual environment, so
# nothing is added to .venv. Run it after changing a dependency or to take newer releases:
#   make lock
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
PYTHON=${PYTHON:-python3}

image_python=$(sed -nE 's/^ARG PYTHON_IMAGE=python:([0-9]+\.[0-9]+)-.*/\1/p' Dockerfile)
if [[ -z "$image_python" ]]; then
    echo "lock.sh: no 'ARG PYTHON_IMAGE=python:X.Y-...' in Dockerfile to take the Python version from" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"

compile() {
    "$work/venv/bin/uv" pip compile --quiet --generate-hashes \
        --python-version "$image_python" --python-platform linux \
        --custom-compile-command "make lock" "$@"
}

compile pyproject.toml --output-file requirements.lock
"$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    >"$work/build.in"
compile "$work/build.in" --no-annotate --output-file requirements-build.lock
echo "requirements.lock and requirements-build.lock resolved for Python $image_python on Linux"
