"""A real Prometheus scrapes a running connector (the simulator with live traffic, the real
broker) and evaluates every query of the dashboard and every alert through its HTTP API. The
connector runs as a fleet of one replica (`fleet.enabled`, a group of its own), which owns its
one source, so that the fleet's panels and alerts read what a fleet exports.

What "returns data" means here:

* Dashboard queries: each, with its variables replaced by concrete values, returns at least one
  series with a finite value. Every counter and histogram of the fixed label sets exists from
  the first scrape (`metrics.init_source`), and the run makes the rest happen: live traffic,
  token renewals (a 2 s token lifetime), a poison bill (a dead letter), sweeps and audits.
* Alert expressions: an alert that is quiet returns nothing, and that is right, so the whole
  expression is only required to be valid (Prometheus answers it without error, and evaluates
  the loaded rule with health "ok"). What would go unnoticed is a misspelt metric or label
  value: so every vector selector in the expression (metric name with its matchers, range
  dropped) must select at least one series. One alert, CdrConnectorDeadLetters, really fires
  on the poison bill, and the test waits for it to do so.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from cdr_connector import metrics
from cdr_connector.simulator import (
    FaultConfig,
    RunningSimulator,
    SimulatorConfig,
    running_simulator,
)
from tests.integration.harness import (
    ConnectorProcess,
    admin_post,
    free_port,
)
from tests.kafka_helpers import unique_name
from tests.observability.conftest import (
    ALERTS,
    DASHBOARD,
    PrometheusServer,
    Sample,
    alert_rules,
    concrete,
    dashboard_queries,
    finite_values,
    metric_names,
    metric_selectors,
    scrape,
    start_connector,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SOURCE = "obs"
JOB = "cdr-connector"
ZONE = "Asia/Shanghai"
# Series a query is allowed to select without the connector exporting them: Prometheus' own.
PROMETHEUS_SERIES = {"up"}
READY_TIMEOUT = 45.0


@dataclass
class Stack:
    prometheus: PrometheusServer
    connector: ConnectorProcess
    session: aiohttp.ClientSession
    samples: list[Sample]


async def wait_for(
    prometheus: PrometheusServer, session: aiohttp.ClientSession, expr: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await prometheus.query(session, expr):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr} returned nothing within {timeout}s:\n{prometheus.output()}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("prometheus-scrape")
    config = SimulatorConfig(
        appid="test-appid",
        accesskey="test-accesskey-s3cr3t",
        backlog=300,
        rate=20.0,
        timezone=ZONE,
        seed=21,
        backlog_span=7200.0,
        token_ttl=2.0,
        faults=FaultConfig(http_5xx_rate=0.05),
    )
    async with running_simulator(config) as sim, aiohttp.ClientSession() as session:
        connector = start_connector(
            kafka_bootstrap,
            sim,
            SOURCE,
            workdir,
            CDR_POLL__PAGE_SIZE="100",
            CDR_POLL__AUDIT_INTERVAL_SECONDS="2",
            CDR_POLL__AUDIT_SETTLE_SECONDS="60",
            CDR_FLEET__ENABLED="true",
            CDR_FLEET__GROUP_ID=unique_name("obs-fleet"),
            CDR_FLEET__COORDINATION_TOPIC=unique_name("obs-fleet-sources"),
        )
        prometheus: PrometheusServer | None = None
        try:
            await connector.wait_ready(READY_TIMEOUT)
            prometheus = PrometheusServer(scrape_config(connector.http_port), workdir, free_port())
            await prometheus.wait_ready(session)
            # The group assigns the source, which then starts; its counters are seen at zero
            # first, so that Prometheus sees the dead letter as an increase.
            await wait_for(prometheus, session, "cdr_connector_fleet_sources_owned == 1", 30)
            zero = f'cdr_connector_records_dead_lettered_total{{source="{SOURCE}"}} == 0'
            await wait_for(prometheus, session, zero, timeout=30)
            await inject_poison(sim)
            await wait_for_history(prometheus, session)
            yield Stack(prometheus, connector, session, await scrape(session, connector.http_port))
        finally:
            if prometheus is not None:
                prometheus.stop()
            connector.kill()


def scrape_config(port: int) -> dict[str, object]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }


async def inject_poison(sim: RunningSimulator) -> None:
    """A bill with an impossible start time: the connector dead-letters it at normalise."""
    bill = {"extnumber": "8001", "starttime": "2024-02-30 10:00:00"}
    await admin_post(sim.admin_url, "inject", bill)


async def wait_for_history(prometheus: PrometheusServer, session: aiohttp.ClientSession) -> None:
    """Until Prometheus holds what every query needs: committed live records, the dead letter,
    an audit, and enough samples for the rate windows."""
    source = f'source="{SOURCE}"'
    for expr in (
        f'cdr_connector_records_produced_total{{{source}, mode="live"}} > 0',
        f'cdr_connector_records_dead_lettered_total{{{source}, reason="normalise"}} > 0',
        f"cdr_connector_audit_last_run_timestamp_seconds{{{source}}}",
        f"count_over_time(cdr_connector_build_info{{{source}}}[1m]) >= 10",
        f'sum(rate(cdr_connector_records_produced_total{{{source}, mode="live"}}[10s])) > 0',
    ):
        await wait_for(prometheus, session, expr, timeout=40)


# --- the dashboard ---------------------------------------------------------------------------


async def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25, "the dashboard lost its panels"
    empty: list[str] = []
    for title, expr in queries:
        result = await stack.prometheus.query(stack.session, concrete(expr, SOURCE))
        if not finite_values(result):
            empty.append(f"{title}: {expr} -> {result}")
    assert empty == [], "queries without data:\n" + "\n".join(empty)


async def test_the_source_variable_lists_the_source(stack: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    query = variables["source"]["query"]["query"]
    assert query == "label_values(cdr_connector_build_info, source)"
    values = await stack.prometheus.api(
        stack.session, "label/source/values", **{"match[]": "cdr_connector_build_info"}
    )
    assert values == [SOURCE]


async def test_the_dashboard_reads_only_metrics_the_connector_exports(stack: Stack) -> None:
    """Checked against the connector's own exposition, not against Prometheus."""
    exported = {s.name for s in stack.samples}
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    assert used - exported == set()
    process = {
        name for _, expr in dashboard_queries() for name in re.findall(r"\bprocess_\w+", expr)
    }
    assert process, "the dashboard has no process panels"
    assert process - exported == set()


# --- the alerts ------------------------------------------------------------------------------


async def test_prometheus_loads_and_evaluates_every_alert(stack: Stack) -> None:
    data = await stack.prometheus.api(stack.session, "rules")
    loaded = {
        rule["name"]: rule
        for group in data["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }
    assert sorted(loaded) == sorted(rule["alert"] for rule in alert_rules())
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert not rule.get("lastError"), name


async def test_every_alert_expression_is_valid_and_selects_real_series(stack: Stack) -> None:
    known = {s.name for s in stack.samples} | PROMETHEUS_SERIES
    missing: list[str] = []
    for rule in alert_rules():
        expr = rule["expr"]
        await stack.prometheus.query(stack.session, expr)  # fails on an invalid expression
        selectors = metric_selectors(expr, known)
        assert selectors, f"{rule['alert']}: reads no metric the connector exports: {expr}"
        for selector in selectors:
            if not await stack.prometheus.query(stack.session, selector):
                missing.append(f"{rule['alert']}: {selector}")
        unknown = metric_names(expr) - known
        assert unknown == set(), f"{rule['alert']}: metrics nobody exports: {unknown}"
    assert missing == [], "selectors without series:\n" + "\n".join(missing)


async def test_the_dead_letter_alert_fires_and_the_others_stay_quiet(stack: Stack) -> None:
    deadline = time.monotonic() + 20
    firing: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline:
        alerts = (await stack.prometheus.api(stack.session, "alerts"))["alerts"]
        firing = {a["labels"]["alertname"]: a["labels"] for a in alerts if a["state"] == "firing"}
        if "CdrConnectorDeadLetters" in firing:
            break
        await asyncio.sleep(0.5)
    assert sorted(firing) == ["CdrConnectorDeadLetters"]
    labels = firing["CdrConnectorDeadLetters"]
    assert (labels["source"], labels["reason"], labels["job"]) == (SOURCE, "normalise", JOB)


# --- the exposition ---------------------------------------------------------------------------


async def test_every_label_value_comes_from_its_fixed_set(stack: Stack) -> None:
    for sample in stack.samples:
        labels = dict(sample.labels)
        assert labels.pop("source", SOURCE) == SOURCE, sample
        if sample.name == "cdr_connector_build_info":
            assert sorted(labels) == ["schema", "version"], sample
            continue
        labels.pop("le", None)
        for name, value in labels.items():
            assert name in metrics.LABEL_VALUES, f"{sample.name}: label {name} has no fixed set"
            assert value in metrics.LABEL_VALUES[name], f"{sample.name}: {name}={value}"
