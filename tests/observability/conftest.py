"""Shared plumbing of the observability tests: Prometheus and promtool, the deploy files, and
reading the connector's own /metrics.

Prometheus and promtool come from Debian's `prometheus` package, unpacked into
``.tools/prometheus`` by ``scripts/install-prometheus.sh`` (``make test`` runs it). A missing
binary fails the test that needs it, with the command that installs it; these tests never skip.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cdr_connector.simulator import RunningSimulator
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    connector_env,
    free_port,
    wait_until_ok,
)
from tests.kafka_helpers import unique_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "cdr-connector-dashboard.json"
README = REPO_ROOT / "README.md"
PROMETHEUS_BIN = REPO_ROOT / ".tools" / "prometheus" / "usr" / "bin"
INSTALL_HINT = "run scripts/install-prometheus.sh (make test does)"

# What the dashboard's variables stand for when its queries are run by hand: the source under
# test, and Grafana's interval variables as Grafana would set them for a 1 s scrape interval.
GRAFANA_INTERVALS = {"__rate_interval": "10s", "__interval": "5s", "__range": "1m"}
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# A vector selector: a metric name, optionally with label matchers. Function names, keywords and
# label names in `by (...)` match too; callers keep the names of the metrics they know.
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def prometheus_binary(name: str) -> Path:
    """`prometheus` or `promtool`; fails the test when they are not installed."""
    path = PROMETHEUS_BIN / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{name} is not installed at {path}: {INSTALL_HINT}", pytrace=False)
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml, over all groups."""
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every query target in the dashboard, rows included."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return found


def concrete(expr: str, source: str) -> str:
    """A dashboard expression with its variables replaced; unknown variables fail the test."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "source":
            return source
        if name in GRAFANA_INTERVALS:
            return GRAFANA_INTERVALS[name]
        pytest.fail(f"{expr}: the dashboard has no variable ${name}", pytrace=False)

    return _VARIABLE.sub(value, expr)


def metric_selectors(expr: str, known: set[str]) -> list[str]:
    """The vector selectors (name and matchers, range dropped) of the metrics in `known` that
    `expr` reads; e.g. `rate(x_total{a="b"}[5m])` -> [`x_total{a="b"}`]."""
    return [
        match.group(0).replace(" ", "")
        for match in _SELECTOR.finditer(expr)
        if match.group(1) in known
    ]


def metric_names(expr: str) -> set[str]:
    """Names in `expr` that look like the connector's metrics."""
    return {m.group(1) for m in _SELECTOR.finditer(expr) if m.group(1).startswith("cdr_connector_")}


# --- the connector's own /metrics ----------------------------------------------------------


def start_connector(
    kafka_bootstrap: str, sim: RunningSimulator, source: str, log_dir: Path, **settings: str
) -> ConnectorProcess:
    """A connector process for `source` on fresh topics, its operations port free."""
    topics = Topics(unique_name(source), unique_name(f"{source}-dlq"), unique_name(f"{source}-st"))
    env = connector_env(
        kafka_bootstrap, sim.url, topics, source=source, http_port=free_port(), **settings
    )
    return ConnectorProcess(env, log_dir / "connector.log")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


async def scrape(session: aiohttp.ClientSession, port: int) -> list[Sample]:
    """Every sample of the connector's /metrics, as Prometheus would read it."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value_of(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` with `labels` (None when there is none)."""
    matching = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) <= 1, f"{name}{labels} matches {len(matching)} samples"
    return matching[0] if matching else None


# --- a real Prometheus -----------------------------------------------------------------------


class PrometheusServer:
    """`prometheus` on 127.0.0.1 with a throw-away TSDB, queried through its HTTP API."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(prometheus_binary("prometheus")),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        url = f"{self.url}/-/ready"
        await wait_until_ok(
            session,
            url,
            what="prometheus",
            process=self.process,
            output=self.output,
            timeout=timeout,
        )

    async def api(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        """The `data` of a successful API answer; an error answer fails with its message."""
        async with session.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now."""
        data = await self.api(session, "query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = [float(item["value"][1]) for item in result]
    return [v for v in values if math.isfinite(v)]


@pytest.fixture
def promtool() -> Path:
    return prometheus_binary("promtool")
