"""The metrics follow Prometheus' conventions and the README's catalogue; the operations
endpoints answer as documented."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import KafkaError
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cdr_connector import metrics
from cdr_connector.api.client import SERVICE_LABELS
from cdr_connector.http import create_ops_app
from cdr_connector.status import PipelineStatus
from tests.fakes import FakeClock, FakeSink, batch, bill, make_settings, started

README = Path(__file__).resolve().parents[2] / "README.md"
PREFIX = "cdr_connector_"
# Labels that hold one value per process rather than a value from a fixed set.
PER_PROCESS_LABELS = {"source"}
BUILD_INFO_KEYS = {"version", "schema"}
# Exposition suffixes per type: what a name in the catalogue looks like.
SUFFIX = {"counter": "_total", "info": "_info", "gauge": "", "histogram": ""}


def families() -> list[Metric]:
    """The connector's own families: not prometheus_client's process_* (README says so)."""
    process = {family.name for family in metrics.PROCESS.collect()}
    return [family for family in metrics.REGISTRY.collect() if family.name not in process]


def exposed_name(family: Metric) -> str:
    return family.name + SUFFIX[family.type]


def label_names(family: Metric) -> list[str]:
    """The declared label names of a family, read from the collector that owns it."""
    for value in vars(metrics).values():
        if getattr(value, "_name", None) == family.name:
            return list(value._labelnames)
    raise AssertionError(f"{family.name} is not declared in cdr_connector.metrics")


@pytest.fixture(scope="module", autouse=True)
def unit_source() -> None:
    metrics.init_source("unit", version="0.0.0-test", schema="fp:0123456789abcdef")


# --- naming -------------------------------------------------------------------------------


def test_every_name_has_the_prefix_and_is_snake_case() -> None:
    for family in families():
        assert re.fullmatch(rf"{PREFIX}[a-z0-9_]+", family.name), family.name
        assert family.documentation.strip(), f"{family.name} has no help text"


def test_counters_end_in_total_and_nothing_else_does() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            else:
                assert not sample.name.endswith("_total"), sample.name
    assert "_created" not in text, "created series are switched off"


def test_units_are_base_units_in_the_name() -> None:
    for family in families():
        name = exposed_name(family)
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days|percent)(_|$)", name), name
        if "second" in name or "timestamp" in name:
            assert re.search(r"_seconds(_total)?$", name), name
        if "timestamp" in name:
            assert name.endswith("_timestamp_seconds"), name
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: every histogram measures a duration"


def test_every_metric_is_per_source_and_every_other_label_has_a_fixed_set() -> None:
    for family in families():
        names = label_names(family)
        if family.name in metrics.PROCESS_WIDE:
            assert "source" not in names, f"{family.name} is the replica's, not a source's"
        else:
            assert names[:1] == ["source"], f"{family.name}: source comes first"
            names = names[1:]
        for label in names:
            assert label in metrics.LABEL_VALUES, f"{family.name}: {label} has no fixed set"


def test_the_replicas_own_counters_exist_at_zero_from_the_start() -> None:
    # In a process of its own: the tests of this one may have counted rebalances already.
    program = (
        "from cdr_connector import metrics\n"
        "for change in metrics.FLEET_CHANGES:\n"
        "    print(change, metrics.REGISTRY.get_sample_value(\n"
        "        'cdr_connector_fleet_rebalances_total', {'change': change}))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert found[:-1] == [f"{change} 0.0" for change in metrics.FLEET_CHANGES]


def test_every_label_value_in_the_registry_comes_from_its_fixed_set() -> None:
    """Whatever ran in this process before (other unit tests drive the client and the
    pipeline) left only values from the fixed sets."""
    for family in families():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in PER_PROCESS_LABELS or label == "le":
                    continue
                if family.type == "info" and label in BUILD_INFO_KEYS:
                    continue
                assert value in metrics.LABEL_VALUES[label], f"{sample.name}: {label}={value}"


def test_the_api_client_counts_only_services_of_the_fixed_set() -> None:
    assert set(SERVICE_LABELS.values()) == set(metrics.API_SERVICES)


def test_the_kafka_error_codes_are_librdkafka_names() -> None:
    for code in metrics.KAFKA_ERROR_CODES:
        if code != "other":
            assert KafkaError(getattr(KafkaError, code)).name() == code


@pytest.mark.parametrize(
    ("label", "value", "expected"),
    [
        (metrics.api_error_kind_for_ret, 601, "ret_601"),
        (metrics.api_error_kind_for_ret, 700, "ret_other"),
        (metrics.dead_letter_reason, "encode", "encode"),
        (metrics.dead_letter_reason, "parse", "parse"),
        (metrics.dead_letter_reason, "fetch", "other"),
        (metrics.kafka_error_label, "_MSG_TIMED_OUT", "_MSG_TIMED_OUT"),
        (metrics.kafka_error_label, "_SSL", "other"),
        (metrics.direction_label, "callout", "callout"),
        (metrics.direction_label, "8001", "other"),
        (metrics.callmethod_label, 3, "3"),
        (metrics.callmethod_label, 99, "other"),
    ],
)
def test_values_outside_a_set_are_counted_as_other(
    label: object, value: object, expected: str
) -> None:
    assert label(value) == expected  # type: ignore[operator]


# --- init_source --------------------------------------------------------------------------


def series_of(family: Metric, source: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of a family's series for `source` (histograms: one per series)."""
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        for s in family.samples
        if s.labels.get("source") == source and not s.name.endswith(("_sum", "_bucket"))
    }


def test_init_source_creates_every_counter_and_histogram_series_at_zero() -> None:
    for family in families():
        if family.type not in ("counter", "histogram") or family.name in metrics.PROCESS_WIDE:
            continue
        labels = label_names(family)[1:]
        expected = math.prod(len(metrics.LABEL_VALUES[label]) for label in labels)
        assert len(series_of(family, "unit")) == expected, family.name
        for sample in family.samples:
            if sample.labels.get("source") == "unit":
                assert sample.value == 0, sample


def test_init_source_publishes_the_build_info_and_leaves_gauges_unknown() -> None:
    info = metrics.REGISTRY.get_sample_value(
        "cdr_connector_build_info",
        {"source": "unit", "version": "0.0.0-test", "schema": "fp:0123456789abcdef"},
    )
    assert info == 1
    backlog = metrics.REGISTRY.get_sample_value(
        "cdr_connector_api_backlog_records", {"source": "unit"}
    )
    assert backlog is None


# --- the README catalogue -------------------------------------------------------------------


def catalogue() -> dict[str, tuple[str, str]]:
    """name -> (type, labels) of the rows of the README's metrics table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)
    assert len(section) == 2, "README.md has no '## Metrics' section"
    rows = re.findall(r"^\| `(cdr_connector_\w+)` \| (\w+) \| ([^|]*) \|", section[1], re.M)
    return {name: (kind, labels) for name, kind, labels in rows}


def test_the_readme_catalogue_lists_every_metric_with_its_type_and_labels() -> None:
    rows = catalogue()
    declared = {exposed_name(family): family for family in families()}
    assert sorted(rows) == sorted(declared), "README.md's metrics table and the registry differ"
    for name, family in declared.items():
        kind, labels = rows[name]
        assert kind == family.type, name
        documented = re.findall(r"`(\w+)`", labels)
        if family.type == "info":
            assert documented == ["source", "version", "schema"], name
        else:
            assert documented == label_names(family), name


def test_the_readme_lists_every_fixed_label_value() -> None:
    text = README.read_text(encoding="utf-8").split("\n## Metrics\n", 1)[1]
    for label, values in metrics.LABEL_VALUES.items():
        row = re.search(rf"^\| `{label}` \| (.*) \|$", text, re.M)
        assert row, f"README.md lists no values of {label}"
        assert re.findall(r"`([^`]+)`", row.group(1)) == list(values), label


# --- the operations endpoints ------------------------------------------------------------


async def test_livez_answers_without_checking_anything() -> None:
    status = PipelineStatus(failure="Kafka is gone")
    async with TestClient(TestServer(create_ops_app(status.not_ready_reason))) as client:
        response = await client.get("/livez")
        assert response.status == 200
        assert await response.json() == {"status": "alive"}


async def test_readyz_names_what_is_missing_until_ready_and_while_stopping() -> None:
    status = PipelineStatus()

    async def readyz() -> tuple[int, dict[str, str]]:
        response = await client.get("/readyz")
        assert response.content_type == "application/json"
        return response.status, await response.json()

    async with TestClient(TestServer(create_ops_app(status.not_ready_reason))) as client:
        for step, reason in (
            ("kafka_ready", "Kafka producer not initialised"),
            ("state_loaded", "checkpoint state not loaded"),
            ("logged_in", "not logged in to the vendor API"),
        ):
            assert await readyz() == (503, {"status": "not ready", "reason": reason})
            setattr(status, step, True)
        assert await readyz() == (200, {"status": "ready"})
        status.stopping = True
        assert await readyz() == (503, {"status": "not ready", "reason": "shutting down"})
        status.failure = "ApiAuthError: authorisation expired"
        assert await readyz() == (
            503,
            {"status": "not ready", "reason": "ApiAuthError: authorisation expired"},
        )


async def test_metrics_serves_the_registry_in_the_text_format() -> None:
    async with TestClient(TestServer(create_ops_app(lambda: None))) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain;")
        text = await response.text()
    names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert "cdr_connector_build_info" in names
    assert 'cdr_connector_api_errors_total{kind="ret_601",source="unit"}' in text


# --- the batch histogram ----------------------------------------------------------------------


def test_batch_histogram_exposes_what_a_histogram_of_the_same_values_would() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    bounds = (0.5, 1.0, 5.0, 7.5, 60.0)
    rng = random.Random(3)
    batches = [
        [rng.choice((0.5, 1.0, 60.0, rng.uniform(0, 90))) for _ in range(50)] for _ in range(4)
    ]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("h_seconds", "help", ["source"], buckets=bounds, registry=theirs)
    batch = metrics.BatchHistogram("h_seconds", "help", bounds, ours)
    for values in batches:
        for value in values:
            histogram.labels("a").observe(value)
        batch.labels("a").observe_many(values)
    batch.labels("b")  # created, never observed: zeros, as a Histogram child

    histogram.labels("b")

    def samples(
        registry: CollectorRegistry,
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    expected, got = samples(theirs), samples(ours)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    assert got[("h_seconds_count", (("source", "a"),))] == 200


# --- the Prometheus recorder ----------------------------------------------------------------


async def test_the_recorder_counts_telephony_figures_per_label_set() -> None:
    source = "recorder"

    def calls(direction: str, answered: str) -> float:
        labels = {"source": source, "direction": direction, "callmethod": "3"}
        value = metrics.REGISTRY.get_sample_value(
            "cdr_connector_calls_total", labels | {"answered": answered}
        )
        return value or 0.0

    def billed() -> float:
        labels = {"source": source, "direction": "callin"}
        return metrics.REGISTRY.get_sample_value("cdr_connector_billed_seconds_total", labels) or 0

    before = (calls("callin", "true"), calls("callin", "false"), billed())
    pipeline = await started(
        FakeSink(), recorder=metrics.PrometheusRecorder(source), settings=make_settings(source)
    )
    await pipeline.committer.commit(
        [
            batch(
                bill(1, direction="callin", billsec=10),
                bill(2, direction="callin", billsec=20),
                bill(3, direction="callin", answertime=None, billsec=0),
            )
        ]
    )
    assert calls("callin", "true") - before[0] == 2
    assert calls("callin", "false") - before[1] == 1
    assert billed() - before[2] == 30


async def test_the_recorder_reports_a_commit_state_and_freshness_under_its_source() -> None:
    source = "recorder-state"
    sink, clock = FakeSink(), FakeClock(start=1_795_700_000.0)
    recorder = metrics.PrometheusRecorder(source)
    pipeline = await started(sink, recorder=recorder, settings=make_settings(source), clock=clock)
    await pipeline.committer.commit([batch(bill(1), bill(2)), batch(bill(2), mode="sweep")])

    def sample(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, {"source": source} | labels)

    assert sample("cdr_connector_records_produced_total", mode="live") == 2
    assert sample("cdr_connector_records_fetched_total", mode="sweep") == 1
    assert sample("cdr_connector_records_deduplicated_total") == 1
    assert sample("cdr_connector_state_committed_ids") == 2
    # bill()'s calls end at 2026-11-26 10:01:00 in Shanghai, 02:01:00Z
    assert sample("cdr_connector_freshness_lag_seconds") == 1_795_700_000 - 1_795_658_460
    clock.advance(60)
    assert sample("cdr_connector_freshness_lag_seconds") == 1_795_700_060 - 1_795_658_460


def test_a_source_that_moved_away_leaves_no_readiness_build_or_up_series() -> None:
    source = "moved-away"
    metrics.init_source(source, version="0.0.0-test", schema="fp:0")
    metrics.UP.labels(source).set(1)
    metrics.SOURCE_READY.labels(source).set(1)
    metrics.forget_source(source)
    text = generate_latest(metrics.REGISTRY).decode()
    for name in (
        "cdr_connector_source_ready",
        "cdr_connector_build_info",
        "cdr_connector_source_up",
    ):
        assert f'{name}{{source="{source}"' not in text, name
    metrics.forget_source(source)  # forgetting twice is harmless
