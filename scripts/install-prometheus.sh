#!/usr/bin/env bash
# Installs Prometheus and promtool for the observability tests (tests/observability/), from
# Debian's `prometheus` package, into .tools/prometheus (git-ignored): the package is downloaded
# with `apt-get download` and unpacked with `dpkg -x`, so nothing is installed system-wide and
# no service is started. Skips everything when promtool is already there. Needs a Debian (or
# Ubuntu) machine with apt; `apt-get update`, run only when the download fails (a fresh machine
# without package lists), needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

target=.tools/prometheus
if [ -x "$target/usr/bin/promtool" ] && [ -x "$target/usr/bin/prometheus" ]; then
  exit 0
fi
command -v apt-get >/dev/null || { echo "installing Prometheus needs apt-get (Debian)" >&2; exit 1; }

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
# `apt-get download` runs as the unprivileged _apt user where it can; a private directory that
# user cannot write to only produces a warning, so the directory is opened up for it.
chmod 0777 "$download"
fetch() { (cd "$download" && apt-get download prometheus); }
if ! fetch; then
  # A fresh machine (or an image with its lists removed) knows no packages yet.
  echo "apt-get download failed; updating the package lists and trying again" >&2
  apt-get update
  fetch
fi

deb=$(find "$download" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)
[ -n "$deb" ] || { echo "apt-get download produced no prometheus .deb" >&2; exit 1; }
rm -rf "$target"
mkdir -p "$target"
dpkg -x "$deb" "$target"
"$target/usr/bin/promtool" --version >/dev/null
echo "Prometheus $(dpkg-deb -f "$deb" Version) in $target" >&2
