"""The dashboard's layout and the process panels, read from its JSON (no Prometheus: whether
every query returns data from a running connector is tests/observability/test_prometheus_scrape.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.observability.conftest import DASHBOARD, dashboard_queries, metric_names

# The process_* metrics carry no `source` label (prometheus_client's process collector): a panel
# reaches the source's process through the instance that exports the source's build info.
SOURCE_JOIN = 'on (job, instance) cdr_connector_build_info{source="$source"}'
PROCESS_METRICS = {
    "CPU": "process_cpu_seconds_total",
    "Memory (RSS)": "process_resident_memory_bytes",
    "Restarts": "process_start_time_seconds",
}


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.append(panel)
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return found


def test_process_panels_read_cpu_memory_and_restarts_of_the_sources_process() -> None:
    queries: dict[str, list[str]] = {}
    for title, expr in dashboard_queries():
        queries.setdefault(title, []).append(expr)
    for title, metric in PROCESS_METRICS.items():
        assert title in queries, f"the dashboard has no panel {title!r}"
        (expr,) = queries[title]
        assert re.search(rf"\b{metric}\b", expr), f"{title}: {expr}"
        assert SOURCE_JOIN in expr, f"{title} is not tied to the selected source: {expr}"
    assert "rate(process_cpu_seconds_total[" in queries["CPU"][0]
    assert "changes(process_start_time_seconds[$__range])" in queries["Restarts"][0]


def test_every_process_query_is_tied_to_the_source() -> None:
    """A process_* query without the join would mix every process Prometheus scrapes."""
    for title, expr in dashboard_queries():
        if re.search(r"\bprocess_\w+", expr):
            assert SOURCE_JOIN in expr, f"{title}: {expr}"


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = _panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


# The fleet's panels show the replicas of the selected source's release: a source moves between
# replicas (instances), but its release (scrape job) stays.
RELEASE_JOIN = 'on (job) cdr_connector_build_info{source="$source"}'
FLEET_PANELS = {
    "Sources owned per replica": {
        "cdr_connector_fleet_sources_owned",
        "cdr_connector_fleet_sources_configured",
    },
    "Rebalances": {"cdr_connector_fleet_rebalances_total"},
    "Source readiness": {"cdr_connector_source_ready"},
}


def test_fleet_panels_show_owned_sources_rebalances_and_readiness() -> None:
    read: dict[str, set[str]] = {}
    for title, expr in dashboard_queries():
        read.setdefault(title, set()).update(metric_names(expr))
    for title, metrics in FLEET_PANELS.items():
        assert title in read, f"the dashboard has no panel {title!r}"
        assert metrics <= read[title], f"{title} reads {read[title]}"
    assert "increase(cdr_connector_fleet_rebalances_total[" in " ".join(
        expr for title, expr in dashboard_queries() if title == "Rebalances"
    )


def test_every_fleet_query_is_tied_to_the_sources_release() -> None:
    """The fleet's gauges and counters carry no `source`: without the join a panel would mix
    every release Prometheus scrapes."""
    fleet_queries = [
        (title, expr) for title, expr in dashboard_queries() if "cdr_connector_fleet_" in expr
    ]
    assert len(fleet_queries) >= 3
    for title, expr in fleet_queries:
        assert RELEASE_JOIN in expr, f"{title}: {expr}"
