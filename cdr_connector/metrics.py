"""Every metric cdr-connector exports, declared once, on the project's own registry.

Names follow Prometheus conventions: the `cdr_connector_` prefix, base units, `_total` on
counters. Label values come from the fixed sets below, never from data (an extension number or an
error message as a label would let one bad day create millions of series).
"""

from __future__ import annotations

import contextlib
import math
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from cdr_connector.batch_writer import RecordTallies
    from cdr_connector.checkpoint import CheckpointState
    from cdr_connector.committer import CommitSummary
    from cdr_connector.source import FetchMode

# No `_created` gauge beside every counter and histogram: Prometheus' text format gains nothing
# from them, and they would double the series.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
REGISTRY = CollectorRegistry(auto_describe=True)
# prometheus_client's own `process_*` metrics (memory, CPU, open and maximum file descriptors,
# start time), the only ones without the prefix and the source label; empty off Linux.
PROCESS = ProcessCollector(registry=REGISTRY)

# Fixed label value sets, so dashboards and alerts can rely on them.
API_SERVICES = ("login", "getbill", "recordfile")
API_OUTCOMES = ("ok", "retryable", "permanent", "content")
API_ERROR_KINDS = (
    "transport",
    "timeout",
    "http_5xx",
    "http_4xx",
    "bad_json",
    "bad_envelope",
    "salvaged",
    "too_large",
    "redirect",
    "ret_400",
    "ret_500",
    "ret_600",
    "ret_601",
    "ret_602",
    "ret_603",
    "ret_604",
    "ret_other",
)
FETCH_MODES = ("live", "sweep", "audit", "backfill")
DEAD_LETTER_REASONS = ("parse", "normalise", "encode", "convert", "other")
BRAKE_REASONS = ("dead_letters", "commit_failures")
DIRECTIONS = ("callin", "callout", "other")
CALL_METHODS = ("0", "1", "2", "3", "4", "5", "6", "other")
ANSWERED = ("true", "false")
TRANSACTION_RESULTS = ("committed", "aborted")
FLEET_CHANGES = ("assigned", "revoked", "lost")
# librdkafka error names a transactional producer's delivery reports carry in practice; any other
# name is counted as "other" (the log line of the failed transaction names it).
KAFKA_ERROR_CODES = (
    "_MSG_TIMED_OUT",
    "_TIMED_OUT",
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_PURGE_QUEUE",
    "_PURGE_INFLIGHT",
    "_FENCED",
    "_STATE",
    "MSG_SIZE_TOO_LARGE",
    "UNKNOWN_TOPIC_OR_PART",
    "TOPIC_AUTHORIZATION_FAILED",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "INVALID_PRODUCER_EPOCH",
    "PRODUCER_FENCED",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "other",
)

LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "mode": FETCH_MODES,
    "service": API_SERVICES,
    "outcome": API_OUTCOMES,
    "kind": API_ERROR_KINDS,
    "reason": DEAD_LETTER_REASONS,
    "direction": DIRECTIONS,
    "callmethod": CALL_METHODS,
    "answered": ANSWERED,
    "result": TRANSACTION_RESULTS,
    "code": KAFKA_ERROR_CODES,
    "brake": BRAKE_REASONS,
    "change": FLEET_CHANGES,
}
"""Every label's fixed set of values. The labels not listed take one value per process:
`source` (the configured `source.name`), and `version` and `schema` of the build info."""

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Dense around typical poll intervals (seconds), so p99 reads close to the exact figure.
_E2E_BUCKETS = (
    0.5,
    1.0,
    2.0,
    3.0,
    4.0,
    5.0,
    6.0,
    7.5,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
    3600.0,
)

BUILD_INFO = Info(
    "cdr_connector_build",
    "Version of the connector and fingerprint of its Avro schema (always 1).",
    ["source"],
    registry=REGISTRY,
)

RECORDS_FETCHED = Counter(
    "cdr_connector_records_fetched_total",
    "Bills received from the vendor API, before de-duplication.",
    ["source", "mode"],
    registry=REGISTRY,
)
RECORDS_PRODUCED = Counter(
    "cdr_connector_records_produced_total",
    "Records written to the data topic in a committed transaction.",
    ["source", "mode"],
    registry=REGISTRY,
)
RECORDS_DEDUPLICATED = Counter(
    "cdr_connector_records_deduplicated_total",
    "Bills dropped as already committed or seen twice in one cycle: by id, or by content for a "
    "bill without a usable id.",
    ["source"],
    registry=REGISTRY,
)
RECORDS_DEAD_LETTERED = Counter(
    "cdr_connector_records_dead_lettered_total",
    "Bills written to the dead-letter topic in a committed transaction, by failing stage.",
    ["source", "reason"],
    registry=REGISTRY,
)
UNKNOWN_FIELDS = Counter(
    "cdr_connector_unknown_fields_total",
    "Vendor fields the schema does not know, kept in extra_fields for a schema update to promote.",
    ["source"],
    registry=REGISTRY,
)

API_REQUESTS = Counter(
    "cdr_connector_api_requests_total",
    "Requests to the vendor API by service and outcome.",
    ["source", "service", "outcome"],
    registry=REGISTRY,
)
API_REQUEST_DURATION = Histogram(
    "cdr_connector_api_request_duration_seconds",
    "Duration of vendor API requests, successful or not.",
    ["source", "service"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "cdr_connector_api_errors_total",
    "Failed vendor API requests by kind (transport, HTTP status class, ret code, bad JSON).",
    ["source", "kind"],
    registry=REGISTRY,
)
TOKEN_RENEWALS = Counter(
    "cdr_connector_token_renewals_total",
    "Logins to the vendor API (the first one and every renewal).",
    ["source"],
    registry=REGISTRY,
)

API_BACKLOG = Gauge(
    "cdr_connector_api_backlog_records",
    "Unqueried records the vendor API reported (totalitems of syncflag=1) at the last poll.",
    ["source"],
    registry=REGISTRY,
)
NEWEST_COMMITTED_END = Gauge(
    "cdr_connector_newest_committed_call_end_timestamp_seconds",
    "End time of the newest call committed to Kafka; freshness lag is time() minus this.",
    ["source"],
    registry=REGISTRY,
)
FRESHNESS_LAG = Gauge(
    "cdr_connector_freshness_lag_seconds",
    "Now minus the end time of the newest committed call, at scrape time (0 before the first).",
    ["source"],
    registry=REGISTRY,
)


class BatchHistogram(Collector):
    """A histogram labelled by source that takes a whole batch of observations at once.

    prometheus_client's `Histogram.observe` walks the bucket list in Python, under a lock, for
    every value: about 1 µs a record at the connector's rate, for a figure observed once per
    record. Here a batch is bucketed with `bisect` and added under one lock. The exposition is
    the same as a `Histogram`'s: `_bucket{le=...}`, `_sum`, `_count`.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._labelnames = ("source",)  # the attributes prometheus_client's collectors have
        self._documentation = documentation
        self._bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._children: dict[str, _BatchHistogramChild] = {}
        registry.register(self)

    def labels(self, source: str) -> _BatchHistogramChild:
        with self._lock:
            child = self._children.get(source)
            if child is None:
                child = self._children[source] = _BatchHistogramChild(self._bounds, self._lock)
            return child

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            snapshot = [(s, list(c.counts), c.total) for s, c in self._children.items()]
        for source, counts, total in snapshot:
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
                cumulative += count
                # Histogram's own spelling of bounds ("1.0", "+Inf"); untyped in prometheus-client.
                le = floatToGoString(bound)  # type: ignore[no-untyped-call]
                buckets.append((le, cumulative))
            family.add_metric([source], buckets, total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)


class _BatchHistogramChild:
    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock) -> None:
        self._bucket_of = partial(bisect_left, bounds)  # first bound >= value: Prometheus' le
        self._lock = lock
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe_many(self, values: Sequence[float]) -> None:
        tally = Tally(map(self._bucket_of, values))
        total = math.fsum(values)
        with self._lock:
            for bucket, count in tally.items():
                self.counts[bucket] += count
            self.total += total


END_TO_END_LATENCY = BatchHistogram(
    "cdr_connector_end_to_end_latency_seconds",
    "From a call's end to the commit of its record in Kafka.",
    _E2E_BUCKETS,
    REGISTRY,
)

POLL_CYCLE_DURATION = Histogram(
    "cdr_connector_poll_cycle_duration_seconds",
    "Duration of one fetch -> convert -> produce -> commit cycle.",
    ["source", "mode"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SOURCE_START = Histogram(
    "cdr_connector_source_start_seconds",
    "From a source's start (the process's start, or its assignment to this replica by the "
    "fleet's group) to its pipeline running: a fleet's takeover time, once the group noticed.",
    ["source"],
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
LAST_COMMIT = Gauge(
    "cdr_connector_last_commit_timestamp_seconds",
    "Unix time of the last committed transaction (also set when a cycle had nothing to commit).",
    ["source"],
    registry=REGISTRY,
)
TRANSACTIONS = Counter(
    "cdr_connector_transactions_total",
    "Kafka transactions by result (committed, aborted).",
    ["source", "result"],
    registry=REGISTRY,
)
KAFKA_DELIVERY_ERRORS = Counter(
    "cdr_connector_kafka_delivery_errors_total",
    "Failed message deliveries by librdkafka error name (a fixed set, then other).",
    ["source", "code"],
    registry=REGISTRY,
)
PRODUCER_QUEUE_DEPTH = Gauge(
    "cdr_connector_producer_queue_messages",
    "Messages waiting in the producer's queue.",
    ["source"],
    registry=REGISTRY,
)

CALLS = Counter(
    "cdr_connector_calls_total",
    "Committed call records by direction, call method and whether the call was answered.",
    ["source", "direction", "callmethod", "answered"],
    registry=REGISTRY,
)
BILLED_SECONDS = Counter(
    "cdr_connector_billed_seconds_total",
    "Sum of billsec over committed call records.",
    ["source", "direction"],
    registry=REGISTRY,
)

SWEEP_RECOVERED = Counter(
    "cdr_connector_sweep_recovered_records_total",
    "Records a reconciliation sweep found uncommitted and published.",
    ["source"],
    registry=REGISTRY,
)
STATE_IDS = Gauge(
    "cdr_connector_state_committed_ids",
    "Committed ids held in the checkpoint state (within the lookback horizon).",
    ["source"],
    registry=REGISTRY,
)
STATE_RANGES = Gauge(
    "cdr_connector_state_ranges",
    "Id ranges in the checkpoint state; many ranges mean gaps in the id sequence.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_READY = Gauge(
    "cdr_connector_source_ready",
    "1 while a source this process runs is ready (what /readyz says of it), 0 while not; a "
    "source another replica owns has no series here.",
    ["source"],
    registry=REGISTRY,
)
FLEET_SOURCES_OWNED = Gauge(
    "cdr_connector_fleet_sources_owned",
    "Sources the replicas' consumer group assigns to this process (fleet.enabled).",
    registry=REGISTRY,
)
FLEET_SOURCES_CONFIGURED = Gauge(
    "cdr_connector_fleet_sources_configured",
    "Sources in this process's settings; summed over replicas, owned should equal it.",
    registry=REGISTRY,
)
FLEET_REBALANCES = Counter(
    "cdr_connector_fleet_rebalances",
    "Changes of this replica's sources: assigned, revoked (stopped cleanly first), or lost "
    "(membership lost: stopped at once).",
    ["change"],
    registry=REGISTRY,
)


for _change in FLEET_CHANGES:  # the process's own series: created at zero at once
    FLEET_REBALANCES.labels(_change)

PROCESS_WIDE = (
    "cdr_connector_fleet_sources_owned",
    "cdr_connector_fleet_sources_configured",
    "cdr_connector_fleet_rebalances",
)
"""The families of the replica rather than of a source: they have no `source` label."""


def forget_source(source: str) -> None:
    """A source that moved to another replica has no readiness, build or up series here any
    more: dashboards and alerts find it where it runs now."""
    for gauge in (SOURCE_READY, BUILD_INFO, UP):
        with contextlib.suppress(KeyError):
            gauge.remove(source)


UP = Gauge(
    "cdr_connector_source_up",
    "1 while the source runs, 0 once it stopped on an error that needs a person.",
    ["source"],
    registry=REGISTRY,
)


def api_error_kind_for_ret(ret: int) -> str:
    kind = f"ret_{ret}"
    return kind if kind in API_ERROR_KINDS else "ret_other"


def dead_letter_reason(stage: str) -> str:
    return stage if stage in DEAD_LETTER_REASONS else "other"


def kafka_error_label(name: str) -> str:
    return name if name in KAFKA_ERROR_CODES else "other"


def direction_label(direction: str) -> str:
    return direction if direction in DIRECTIONS else "other"


def callmethod_label(callmethod: int) -> str:
    label = str(callmethod)
    return label if label in CALL_METHODS else "other"


AUDIT_MISSING = Gauge(
    "cdr_connector_audit_missing_records",
    "Records the vendor counts in closed hours but that were not committed, at the last audit "
    "(before its repair).",
    ["source"],
    registry=REGISTRY,
)
AUDIT_REPAIRED = Counter(
    "cdr_connector_audit_repaired_records_total",
    "Records an audit found missing and published.",
    ["source"],
    registry=REGISTRY,
)
AUDIT_LAST_RUN = Gauge(
    "cdr_connector_audit_last_run_timestamp_seconds",
    "Unix time of the last completed audit.",
    ["source"],
    registry=REGISTRY,
)

LISTING_TOTAL_MISMATCHES = Counter(
    "cdr_connector_api_total_mismatch",
    "GetBill listings whose totalitems disagreed with the bills their pages held (an inflated "
    "or stale count); the listing ended at its first short or empty page regardless.",
    ["source", "mode"],
    registry=REGISTRY,
)
ANSWER_SKIPPED = Counter(
    "cdr_connector_api_pages_skipped",
    "One-bill GetBill pages larger than source.max_answer_bytes, skipped by a sweep, audit or "
    "backfill: the bill stays with the vendor (raise the limit and backfill its window).",
    ["source"],
    registry=REGISTRY,
)
BRAKE_ENGAGED = Gauge(
    "cdr_connector_brake_engaged",
    "1 while live syncflag=1 reads are stopped (brake: dead_letters when most recent bills "
    "were dead-lettered, commit_failures when transactions kept failing unexpectedly); a "
    "restart releases it.",
    ["source", "brake"],
    registry=REGISTRY,
)
COMMIT_FAILURES = Counter(
    "cdr_connector_commit_failures",
    "Transactions that failed with an unexpected error (not a Kafka error), aborted and "
    "tried again with backoff.",
    ["source"],
    registry=REGISTRY,
)


def init_source(source: str, *, version: str, schema: str) -> None:
    """Publish the build info and create every labelled series of `source` at zero.

    A counter that does not exist yet is "no data" to a dashboard and to `rate()`/`increase()`,
    and the first increment of a series that appears with it is lost to both; created at start,
    every counter and histogram of the fixed label sets exists from the first scrape. Gauges
    are left out: a gauge appears once its value is known (the backlog after the first poll).
    """
    BUILD_INFO.labels(source).info({"version": version, "schema": schema})
    for metric in (
        RECORDS_DEDUPLICATED,
        SOURCE_START,
        UNKNOWN_FIELDS,
        TOKEN_RENEWALS,
        END_TO_END_LATENCY,
        SWEEP_RECOVERED,
        AUDIT_REPAIRED,
        ANSWER_SKIPPED,
        COMMIT_FAILURES,
    ):
        metric.labels(source)
    for brake in BRAKE_REASONS:
        BRAKE_ENGAGED.labels(source, brake).set(0)
    for mode in FETCH_MODES:
        LISTING_TOTAL_MISMATCHES.labels(source, mode)
        RECORDS_FETCHED.labels(source, mode)
        RECORDS_PRODUCED.labels(source, mode)
        POLL_CYCLE_DURATION.labels(source, mode)
    for reason in DEAD_LETTER_REASONS:
        RECORDS_DEAD_LETTERED.labels(source, reason)
    for service in API_SERVICES:
        API_REQUEST_DURATION.labels(source, service)
        for outcome in API_OUTCOMES:
            API_REQUESTS.labels(source, service, outcome)
    for kind in API_ERROR_KINDS:
        API_ERRORS.labels(source, kind)
    for result in TRANSACTION_RESULTS:
        TRANSACTIONS.labels(source, result)
    for code in KAFKA_ERROR_CODES:
        KAFKA_DELIVERY_ERRORS.labels(source, code)
    for direction in DIRECTIONS:
        BILLED_SECONDS.labels(source, direction)
        for callmethod in CALL_METHODS:
            for answered in ANSWERED:
                CALLS.labels(source, direction, callmethod, answered)


class PrometheusRecorder:
    """The `recorder.Recorder` of a running connector: the series above, for one source."""

    def __init__(self, source: str) -> None:
        self._source = source

    def fetch_cycle(self, mode: FetchMode, seconds: float) -> None:
        POLL_CYCLE_DURATION.labels(self._source, mode).observe(seconds)

    def backlog(self, records: int) -> None:
        API_BACKLOG.labels(self._source).set(records)

    def committed(self, mode: FetchMode, fetched: int, summary: CommitSummary, now: float) -> None:
        source = self._source
        RECORDS_FETCHED.labels(source, mode).inc(fetched)
        RECORDS_DEDUPLICATED.labels(source).inc(summary.deduplicated)
        LAST_COMMIT.labels(source).set(now)
        if summary.produced == 0 and summary.dead_lettered == 0:
            return
        RECORDS_PRODUCED.labels(source, mode).inc(summary.produced)
        for stage in summary.dead_letter_stages:
            RECORDS_DEAD_LETTERED.labels(source, dead_letter_reason(stage)).inc()
        if mode == "sweep":
            SWEEP_RECOVERED.labels(source).inc(summary.produced)
        elif mode == "audit":
            AUDIT_REPAIRED.labels(source).inc(summary.produced)
        UNKNOWN_FIELDS.labels(source).inc(summary.tallies.unknown_fields)
        self._observe_records(summary.tallies, now)

    def _observe_records(self, tallies: RecordTallies, now: float) -> None:
        """Per-record figures, added up per label set first (`RecordTallies`): a labelled
        child lookup costs more than the addition it feeds."""
        source = self._source
        END_TO_END_LATENCY.labels(source).observe_many(tallies.latencies(now))
        for (direction, callmethod, answered), count in tallies.calls.items():
            CALLS.labels(
                source,
                direction_label(direction),
                callmethod_label(callmethod),
                "true" if answered else "false",
            ).inc(count)
        for direction, seconds in tallies.billed_seconds.items():
            BILLED_SECONDS.labels(source, direction_label(direction)).inc(seconds)

    def state_changed(self, state: CheckpointState) -> None:
        STATE_IDS.labels(self._source).set(len(state.committed))
        STATE_RANGES.labels(self._source).set(len(state.committed.ranges))
        if state.newest_end_ms:
            NEWEST_COMMITTED_END.labels(self._source).set(state.newest_end_ms / 1000)

    def freshness(self, lag: Callable[[], float]) -> None:
        # Computed at every scrape, so it keeps growing while a cycle is stuck or slow.
        FRESHNESS_LAG.labels(self._source).set_function(lag)

    def commit_failed(self) -> None:
        COMMIT_FAILURES.labels(self._source).inc()

    def brake_engaged(self, kind: str) -> None:
        BRAKE_ENGAGED.labels(self._source, kind).set(1)

    def audited(self, missing: int, at: float) -> None:
        AUDIT_MISSING.labels(self._source).set(missing)
        AUDIT_LAST_RUN.labels(self._source).set(at)

    def listing_total_mismatch(self, mode: FetchMode) -> None:
        LISTING_TOTAL_MISMATCHES.labels(self._source, mode).inc()

    def answer_skipped(self) -> None:
        ANSWER_SKIPPED.labels(self._source).inc()

    def api_request(self, service: str, outcome: str | None, seconds: float) -> None:
        API_REQUEST_DURATION.labels(self._source, service).observe(seconds)
        if outcome is not None:  # a cancelled request has no outcome
            API_REQUESTS.labels(self._source, service, outcome).inc()

    def api_error(self, kind: str) -> None:
        API_ERRORS.labels(self._source, kind).inc()

    def token_renewed(self) -> None:
        TOKEN_RENEWALS.labels(self._source).inc()

    def transaction(self, result: str) -> None:
        TRANSACTIONS.labels(self._source, result).inc()

    def delivery_errors(self, names: list[str]) -> None:
        for name in names:
            KAFKA_DELIVERY_ERRORS.labels(self._source, kafka_error_label(name)).inc()
