"""`PrometheusRecorder` leaves the series the README documents, with exact values: counters move
by the amount reported, gauges hold the last value, histograms keep the bucket edges dashboards
rely on, and label values outside a fixed set are counted as "other".

Every test has a source of its own, so the process-wide registry's other series (left by other
tests) never show in its figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import Metric

from cdr_connector import metrics
from cdr_connector.batch_writer import RecordTallies
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.committer import CommitSummary
from cdr_connector.source import FetchMode

# Bucket edges as Grafana panels and recording rules read them (`le`), then +Inf.
LATENCY_EDGES: tuple[str, ...] = (
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1.0",
    "2.5",
    "5.0",
    "10.0",
    "30.0",
    "+Inf",
)
E2E_EDGES: tuple[str, ...] = (
    "0.5",
    "1.0",
    "2.0",
    "3.0",
    "4.0",
    "5.0",
    "6.0",
    "7.5",
    "10.0",
    "30.0",
    "60.0",
    "120.0",
    "300.0",
    "900.0",
    "3600.0",
    "+Inf",
)
START_EDGES: tuple[str, ...] = (
    "0.5",
    "1.0",
    "2.0",
    "5.0",
    "10.0",
    "20.0",
    "30.0",
    "60.0",
    "120.0",
    "300.0",
    "+Inf",
)
NOW = 1_800_000_100.0


@pytest.fixture
def source() -> Iterator[str]:
    """A source of this test's own, created at zero as the connector creates it at start."""
    name = f"rec-{uuid4().hex[:8]}"
    metrics.init_source(name, version="0.0.0-test", schema="fp:0")
    yield name
    metrics.forget_source(name)


def samples_of(source: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` of `source`: its labels but `source`, and its value.

    Read as `/metrics?name[]=...` serves them, from the collector that declared the name only:
    the registry holds the series of every source every test made."""
    scrape = metrics.REGISTRY.restricted_registry([name])
    return [
        ({k: v for k, v in s.labels.items() if k != "source"}, s.value)
        for family in scrape.collect()
        for s in family.samples
        if s.name == name and s.labels.get("source") == source
    ]


def value(name: str, source: str, **labels: str) -> float | None:
    """The value of one series, None when it does not exist."""
    found = [v for series, v in samples_of(source, name) if series == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def total(name: str, source: str) -> float:
    """The sum of every series of `name` of `source`, whatever its other labels."""
    return sum(v for _labels, v in samples_of(source, name))


def buckets(name: str, source: str, **labels: str) -> list[tuple[str, float]]:
    """(le, cumulative count) of one histogram series, in the order they are exposed."""
    series = samples_of(source, f"{name}_bucket")
    return [(s["le"], v) for s, v in series if s == labels | {"le": s["le"]}]


def cumulative(edges: tuple[str, ...], *counts: float) -> list[tuple[str, float]]:
    return list(zip(edges, counts, strict=True))


def tallies_of(ends_ms: list[int], unknown_fields: int = 0) -> RecordTallies:
    tallies = RecordTallies()
    tallies.end_times_ms = ends_ms
    tallies.unknown_fields = unknown_fields
    return tallies


# --- histograms -----------------------------------------------------------------------------


def test_a_fetch_cycle_is_observed_under_its_mode_in_the_latency_buckets(source: str) -> None:
    recorder = metrics.PrometheusRecorder(source)
    recorder.fetch_cycle("sweep", 10.0)  # on an edge: le is inclusive
    recorder.fetch_cycle("sweep", 0.3)
    name = "cdr_connector_poll_cycle_duration_seconds"
    assert buckets(name, source, mode="sweep") == cumulative(
        LATENCY_EDGES, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2
    )
    assert value(f"{name}_count", source, mode="sweep") == 2
    assert value(f"{name}_sum", source, mode="sweep") == pytest.approx(10.3)
    assert total(f"{name}_count", source) == 2, "no other mode observed anything"


def test_an_api_request_is_timed_by_service_and_counted_only_with_an_outcome(
    source: str,
) -> None:
    recorder = metrics.PrometheusRecorder(source)
    recorder.api_request("getbill", "ok", 0.025)
    recorder.api_request("getbill", None, 31.0)  # cancelled: timed, not counted
    recorder.api_request("login", "retryable", 1.0)
    name = "cdr_connector_api_request_duration_seconds"
    assert buckets(name, source, service="getbill") == cumulative(
        LATENCY_EDGES, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
    )
    assert value(f"{name}_count", source, service="getbill") == 2
    assert value(f"{name}_sum", source, service="getbill") == pytest.approx(31.025)
    assert value(f"{name}_count", source, service="login") == 1
    requests = "cdr_connector_api_requests_total"
    assert value(requests, source, service="getbill", outcome="ok") == 1
    assert value(requests, source, service="login", outcome="retryable") == 1
    assert total(requests, source) == 2


def test_the_source_start_histogram_exists_at_zero_with_its_takeover_buckets(
    source: str,
) -> None:
    name = "cdr_connector_source_start_seconds"
    assert buckets(name, source) == cumulative(START_EDGES, *[0] * 11)
    metrics.SOURCE_START.labels(source).observe(20.0)
    assert buckets(name, source) == cumulative(START_EDGES, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1)


# --- committed --------------------------------------------------------------------------------


def committed_summary() -> CommitSummary:
    """Five records (latencies at NOW: 10 s, 0.5 s, none (an end in the future), 100 s,
    4100 s) and two dead letters, one of a stage outside the fixed set."""
    ends = [NOW - 10, NOW - 0.5, NOW + 100, NOW - 100, NOW - 4100]
    tallies = tallies_of([int(end * 1000) for end in ends], unknown_fields=4)
    tallies.calls = {
        ("callin", 3, True): 2,
        ("callin", 3, False): 1,
        ("callout", 9, True): 1,
        ("8001", 0, False): 1,
    }
    tallies.billed_seconds = {"callin": 30, "callout": 12, "8001": 5}
    return CommitSummary(
        produced=5,
        dead_lettered=2,
        deduplicated=3,
        tallies=tallies,
        dead_letter_stages=["parse", "fetch"],
    )


def test_a_commit_counts_its_batch_under_its_mode(source: str) -> None:
    metrics.PrometheusRecorder(source).committed("live", 10, committed_summary(), NOW)
    assert samples_of(source, "cdr_connector_records_fetched_total") == [
        ({"mode": "live"}, 10),
        ({"mode": "sweep"}, 0),
        ({"mode": "audit"}, 0),
        ({"mode": "backfill"}, 0),
    ]
    assert value("cdr_connector_records_produced_total", source, mode="live") == 5
    assert total("cdr_connector_records_produced_total", source) == 5
    assert value("cdr_connector_records_deduplicated_total", source) == 3
    assert value("cdr_connector_last_commit_timestamp_seconds", source) == NOW
    dead = "cdr_connector_records_dead_lettered_total"
    assert value(dead, source, reason="parse") == 1
    assert value(dead, source, reason="other") == 1, "a stage outside the set is other"
    assert total(dead, source) == 2
    assert value("cdr_connector_unknown_fields_total", source) == 4
    assert value("cdr_connector_sweep_recovered_records_total", source) == 0
    assert value("cdr_connector_audit_repaired_records_total", source) == 0


def test_a_commit_counts_calls_and_billed_seconds_by_fixed_labels(source: str) -> None:
    metrics.PrometheusRecorder(source).committed("live", 10, committed_summary(), NOW)
    calls = {
        (labels["direction"], labels["callmethod"], labels["answered"]): v
        for labels, v in samples_of(source, "cdr_connector_calls_total")
        if v
    }
    assert calls == {
        ("callin", "3", "true"): 2,
        ("callin", "3", "false"): 1,
        ("callout", "other", "true"): 1,
        ("other", "0", "false"): 1,
    }
    assert samples_of(source, "cdr_connector_billed_seconds_total") == [
        ({"direction": "callin"}, 30),
        ({"direction": "callout"}, 12),
        ({"direction": "other"}, 5),
    ]


def test_a_commit_observes_each_records_latency_in_the_end_to_end_buckets(
    source: str,
) -> None:
    metrics.PrometheusRecorder(source).committed("live", 10, committed_summary(), NOW)
    name = "cdr_connector_end_to_end_latency_seconds"
    assert buckets(name, source) == cumulative(
        E2E_EDGES, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5
    )
    assert value(f"{name}_count", source) == 5
    assert value(f"{name}_sum", source) == pytest.approx(10 + 0.5 + 0 + 100 + 4100)


@pytest.mark.parametrize(
    ("mode", "recovered", "repaired"),
    [("live", 0, 0), ("sweep", 3, 0), ("audit", 0, 3), ("backfill", 0, 0)],
)
def test_only_a_sweep_counts_recovered_and_only_an_audit_counts_repaired(
    source: str, mode: FetchMode, recovered: int, repaired: int
) -> None:
    recorder = metrics.PrometheusRecorder(source)
    for produced in (1, 2):  # no dead letters: the produced records alone count
        summary = CommitSummary(produced=produced, tallies=tallies_of([int(NOW * 1000)]))
        recorder.committed(mode, produced, summary, NOW)
    assert value("cdr_connector_records_produced_total", source, mode=mode) == 3
    assert value("cdr_connector_sweep_recovered_records_total", source) == recovered
    assert value("cdr_connector_audit_repaired_records_total", source) == repaired
    assert value("cdr_connector_end_to_end_latency_seconds_count", source) == 2


def test_a_commit_of_dead_letters_only_counts_them_and_their_records(source: str) -> None:
    summary = CommitSummary(
        dead_lettered=1, tallies=tallies_of([], unknown_fields=2), dead_letter_stages=["encode"]
    )
    metrics.PrometheusRecorder(source).committed("backfill", 1, summary, NOW)
    assert value("cdr_connector_records_dead_lettered_total", source, reason="encode") == 1
    assert value("cdr_connector_unknown_fields_total", source) == 2
    assert total("cdr_connector_records_produced_total", source) == 0


def test_a_commit_with_nothing_written_counts_fetched_and_duplicates_only(source: str) -> None:
    """Tallies that would show are ignored when nothing was produced or dead-lettered."""
    summary = CommitSummary(deduplicated=4, tallies=tallies_of([int(NOW * 1000)], 7))
    summary.tallies.calls = {("callin", 1, True): 1}
    summary.tallies.billed_seconds = {"callin": 9}
    recorder = metrics.PrometheusRecorder(source)
    recorder.committed("sweep", 4, summary, NOW)
    recorder.committed("sweep", 0, CommitSummary(), NOW + 5)
    assert value("cdr_connector_records_fetched_total", source, mode="sweep") == 4
    assert value("cdr_connector_records_deduplicated_total", source) == 4
    assert value("cdr_connector_last_commit_timestamp_seconds", source) == NOW + 5
    for name in (
        "cdr_connector_records_produced_total",
        "cdr_connector_records_dead_lettered_total",
        "cdr_connector_unknown_fields_total",
        "cdr_connector_sweep_recovered_records_total",
        "cdr_connector_end_to_end_latency_seconds_count",
        "cdr_connector_calls_total",
        "cdr_connector_billed_seconds_total",
    ):
        assert total(name, source) == 0, name


# --- gauges -----------------------------------------------------------------------------------


def test_the_backlog_gauge_holds_the_last_reported_figure(source: str) -> None:
    recorder = metrics.PrometheusRecorder(source)
    assert value("cdr_connector_api_backlog_records", source) is None, "unknown before a poll"
    recorder.backlog(120)
    recorder.backlog(7)
    assert value("cdr_connector_api_backlog_records", source) == 7


def test_the_state_gauges_hold_its_size_and_its_newest_call_end_in_seconds(
    source: str,
) -> None:
    recorder = metrics.PrometheusRecorder(source)
    empty = CheckpointState(source)
    recorder.state_changed(empty)
    assert value("cdr_connector_state_committed_ids", source) == 0
    assert value("cdr_connector_state_ranges", source) == 0
    newest = "cdr_connector_newest_committed_call_end_timestamp_seconds"
    assert value(newest, source) is None, "no call committed yet: no end time to report"
    state = CheckpointState(source, newest_end_ms=1_795_658_460_123)
    state.committed.add_many([1, 2, 3, 7, 8], committed_at_ms=1_795_658_460_123)
    recorder.state_changed(state)
    recorder.state_changed(state)
    assert value("cdr_connector_state_committed_ids", source) == 5
    assert value("cdr_connector_state_ranges", source) == 2
    assert value(newest, source) == 1_795_658_460.123


def test_the_freshness_lag_is_read_from_the_callable_at_every_scrape(source: str) -> None:
    lag = [12.5]
    metrics.PrometheusRecorder(source).freshness(lambda: lag[0])
    assert value("cdr_connector_freshness_lag_seconds", source) == 12.5
    lag[0] = 40.0
    assert value("cdr_connector_freshness_lag_seconds", source) == 40.0


def test_a_brake_is_zero_from_the_start_and_one_once_engaged(source: str) -> None:
    def brakes() -> list[tuple[dict[str, str], float]]:
        return samples_of(source, "cdr_connector_brake_engaged")

    assert brakes() == [({"brake": "dead_letters"}, 0), ({"brake": "commit_failures"}, 0)]
    recorder = metrics.PrometheusRecorder(source)
    recorder.brake_engaged("dead_letters")
    recorder.brake_engaged("dead_letters")
    assert brakes() == [({"brake": "dead_letters"}, 1), ({"brake": "commit_failures"}, 0)]


def test_an_audit_sets_what_it_found_missing_and_when_it_ran(source: str) -> None:
    recorder = metrics.PrometheusRecorder(source)
    recorder.audited(17, 1_800_000_000.5)
    assert value("cdr_connector_audit_missing_records", source) == 17
    recorder.audited(0, 1_800_003_600.0)
    assert value("cdr_connector_audit_missing_records", source) == 0
    assert value("cdr_connector_audit_last_run_timestamp_seconds", source) == 1_800_003_600.0


# --- counters ---------------------------------------------------------------------------------

Report = Callable[[metrics.PrometheusRecorder], None]


@pytest.mark.parametrize(
    ("report", "name", "labels"),
    [
        (lambda r: r.commit_failed(), "commit_failures", {}),
        (lambda r: r.answer_skipped(), "api_pages_skipped", {}),
        (lambda r: r.token_renewed(), "token_renewals", {}),
        (lambda r: r.listing_total_mismatch("audit"), "api_total_mismatch", {"mode": "audit"}),
        (lambda r: r.api_error("ret_601"), "api_errors", {"kind": "ret_601"}),
        (lambda r: r.api_error("timeout"), "api_errors", {"kind": "timeout"}),
        (lambda r: r.transaction("aborted"), "transactions", {"result": "aborted"}),
        (lambda r: r.transaction("committed"), "transactions", {"result": "committed"}),
        (
            lambda r: r.api_request("recordfile", "content", 0.2),
            "api_requests",
            {"service": "recordfile", "outcome": "content"},
        ),
        (lambda r: r.delivery_errors(["_FENCED"]), "kafka_delivery_errors", {"code": "_FENCED"}),
    ],
    ids=[
        "commit_failed",
        "answer_skipped",
        "token_renewed",
        "listing_total_mismatch",
        "api_error-ret",
        "api_error-timeout",
        "transaction-aborted",
        "transaction-committed",
        "api_request",
        "delivery_errors",
    ],
)
def test_each_report_adds_one_to_its_counter_and_to_no_other_series(
    source: str, report: Report, name: str, labels: dict[str, str]
) -> None:
    name = f"cdr_connector_{name}_total"
    assert value(name, source, **labels) == 0, "created at zero by init_source"
    recorder = metrics.PrometheusRecorder(source)
    for _ in range(3):
        report(recorder)
    assert value(name, source, **labels) == 3
    assert total(name, source) == 3


def test_delivery_errors_count_each_name_and_names_outside_the_set_as_other(
    source: str,
) -> None:
    recorder = metrics.PrometheusRecorder(source)
    recorder.delivery_errors(["_MSG_TIMED_OUT", "_SSL", "_MSG_TIMED_OUT", "BOGUS"])
    recorder.delivery_errors([])
    name = "cdr_connector_kafka_delivery_errors_total"
    assert value(name, source, code="_MSG_TIMED_OUT") == 2
    assert value(name, source, code="other") == 2
    assert total(name, source) == 4


# --- forget_source ----------------------------------------------------------------------------


def test_forgetting_a_source_removes_its_readiness_build_and_up_series_only(
    source: str,
) -> None:
    other = f"rec-{uuid4().hex[:8]}"
    metrics.init_source(other, version="0.0.0-test", schema="fp:0")
    for name in (source, other):
        metrics.UP.labels(name).set(1)
        metrics.SOURCE_READY.labels(name).set(1)
        metrics.PrometheusRecorder(name).commit_failed()
    build = {"version": "0.0.0-test", "schema": "fp:0"}
    metrics.forget_source(source)
    assert value("cdr_connector_source_up", source) is None
    assert value("cdr_connector_source_ready", source) is None
    assert value("cdr_connector_build_info", source, **build) is None
    assert value("cdr_connector_commit_failures_total", source) == 1, "counters stay"
    assert value("cdr_connector_source_up", other) == 1
    assert value("cdr_connector_source_ready", other) == 1
    assert value("cdr_connector_build_info", other, **build) == 1
    metrics.forget_source(other)


# --- the label helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("ret", [400, 500, 600, 601, 602, 603, 604])
def test_each_documented_ret_code_has_its_own_kind(ret: int) -> None:
    assert metrics.api_error_kind_for_ret(ret) == f"ret_{ret}"


@pytest.mark.parametrize("ret", [0, 1, 200, 399, 401, 499, 501, 599, 605, 700, -400])
def test_any_other_ret_code_is_ret_other(ret: int) -> None:
    assert metrics.api_error_kind_for_ret(ret) == "ret_other"


@pytest.mark.parametrize(
    ("label", "values", "outside"),
    [
        (metrics.dead_letter_reason, metrics.DEAD_LETTER_REASONS, ["fetch", "PARSE", ""]),
        (metrics.kafka_error_label, metrics.KAFKA_ERROR_CODES, ["_SSL", "_fenced", ""]),
        (metrics.direction_label, metrics.DIRECTIONS, ["CALLIN", "internal", ""]),
    ],
    ids=["dead_letter_reason", "kafka_error_label", "direction_label"],
)
def test_a_label_keeps_values_of_its_set_and_counts_the_rest_as_other(
    label: Callable[[str], str], values: tuple[str, ...], outside: list[str]
) -> None:
    assert [label(v) for v in values] == list(values)
    assert [label(v) for v in outside] == ["other"] * len(outside)


def test_call_methods_zero_to_six_keep_their_number_and_others_are_other() -> None:
    assert [metrics.callmethod_label(m) for m in range(-1, 9)] == [
        "other",
        *(str(m) for m in range(7)),
        "other",
        "other",
    ]


# --- the batch histogram ----------------------------------------------------------------------


def collected(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{{{s.labels.get('le', '')}}}": s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_a_batch_histogram_sorts_the_edges_it_is_given() -> None:
    registry = CollectorRegistry()
    histogram = metrics.BatchHistogram("h_seconds", "help", (5.0, 0.5, 1.0), registry)
    histogram.labels("a").observe_many([0.7, 6.0, 0.5])
    assert collected(registry) == {
        "h_seconds_bucket{0.5}": 1,
        "h_seconds_bucket{1.0}": 2,
        "h_seconds_bucket{5.0}": 2,
        "h_seconds_bucket{+Inf}": 3,
        "h_seconds_count{}": 3,
        "h_seconds_sum{}": pytest.approx(7.2),
    }


def test_an_empty_batch_creates_the_series_and_changes_no_figure() -> None:
    registry = CollectorRegistry()
    histogram = metrics.BatchHistogram("h_seconds", "help", (1.0,), registry)
    histogram.labels("a").observe_many([])
    assert collected(registry) == {
        "h_seconds_bucket{1.0}": 0,
        "h_seconds_bucket{+Inf}": 0,
        "h_seconds_count{}": 0,
        "h_seconds_sum{}": 0,
    }
    histogram.labels("a").observe_many([-2.0, 3.0])  # below every edge: the first bucket
    assert collected(registry)["h_seconds_bucket{1.0}"] == 1
    assert collected(registry)["h_seconds_sum{}"] == 1.0


def test_a_batch_histogram_declares_its_names_so_a_clash_is_refused() -> None:
    registry = CollectorRegistry()
    metrics.BatchHistogram("h_seconds", "help", (1.0,), registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        metrics.BatchHistogram("h_seconds", "help", (1.0,), registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("h_seconds", "help", registry=registry)


def test_a_scrape_filtered_by_name_finds_the_batch_histogram_and_process_metrics(
    source: str,
) -> None:
    """What `/metrics?name[]=...` serves: the registry knows every collector's names."""

    def families(*names: str) -> list[Metric]:
        return list(metrics.REGISTRY.restricted_registry(list(names)).collect())

    count = "cdr_connector_end_to_end_latency_seconds_count"
    [family] = families(count)
    assert {s.labels["source"] for s in family.samples} >= {source}
    if not list(metrics.PROCESS.collect()):
        pytest.skip("prometheus_client's process metrics exist on Linux only")
    assert [f.name for f in families("process_resident_memory_bytes")] == [
        "process_resident_memory_bytes"
    ]
