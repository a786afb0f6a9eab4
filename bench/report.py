"""Medians of the runs -> the marked section of bench/README.md (the rest is left alone)."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT

README = REPO_ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench:figures:begin -->", "<!-- bench:figures:end -->"
LIBRARIES = ("fastavro", "confluent-kafka", "aiohttp", "orjson", "prometheus-client", "pydantic")
PER_PAGE_MS = 200
CONCURRENCY_FACTOR = 0.8  # of concurrency x page / (200 ms)


def _flatten(figure: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in figure.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def medians(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """name -> key -> median over runs, plus `runs`, `load_min` and `load_max`."""
    out: dict[str, dict[str, float]] = {}
    for name, runs in results["figures"].items():
        flats = [_flatten(run) for run in runs]
        keys = set().union(*flats) if flats else set()
        out[name] = {k: statistics.median(f[k] for f in flats if k in f) for k in keys}
        out[name]["runs"] = len(runs)
        loads = [f["load"] for f in flats if "load" in f]
        out[name]["load_min"], out[name]["load_max"] = min(loads), max(loads)
    return out


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    libs = ", ".join(f"{name} {metadata.version(name)}" for name in LIBRARIES)
    import confluent_kafka

    kafka = re.search(r"<kafka.version>([^<]+)<", (REPO_ROOT / "deploy/dev/pom.xml").read_text())
    return (
        f"{os.cpu_count()} vCPU ({cpu}), {mem_kb / 1024**2:.0f} GB RAM, Linux "
        f"{platform.release()}, Python {platform.python_version()}; {libs}, librdkafka "
        f"{confluent_kafka.libversion()[0]}; Apache Kafka {kafka[1] if kafka else '?'} "
        "(single local broker, KRaft, replication factor 1)"
    )


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _row(m: dict[str, dict[str, float]], row: tuple[str, str, str, str, int]) -> str:
    name, what, key, unit, digits = row
    figure = m.get(name)
    if figure is None:
        return f"| {what} | not run | | |"
    if key not in figure:  # a figure added to the benchmark after these runs
        return f"| {what} | not in these runs | | |"
    low, high = figure["load_min"], figure["load_max"]
    load = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"
    return f"| {what} | {_fmt(figure[key], unit, digits)} | {int(figure['runs'])} | {load} |"


def _get(m: dict[str, dict[str, float]], name: str, key: str) -> float | None:
    return m.get(name, {}).get(key)


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(m: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]

    def add(target: str, measured: str, ok: bool | None) -> None:
        rows.append(f"| {target} | {measured} | {_verdict(ok)} |")

    e2e0 = _get(m, "e2e:0ms_c4", "steady_records_per_s")
    loop = _get(m, "stages:loop", "plain.records_per_s")
    r = _ratio(e2e0, loop)
    add(
        "end to end (0 ms, steady) >= 80% of the plain single-threaded loop",
        f"{_fmt(e2e0)} / {_fmt(loop)} = {_fmt(r and r * 100, '%')}",
        None if r is None else r >= 0.8,
    )
    untransacted = _get(m, "e2e:0ms_c4_untransacted", "steady_records_per_s")
    r = _ratio(e2e0, untransacted)
    add(
        "exactly-once >= 90% of transactions off: end to end (0 ms, steady), the connector / "
        "the same connector with a flush where each commit was",
        f"{_fmt(e2e0)} / {_fmt(untransacted)} = {_fmt(r and r * 100, '%')}",
        None if r is None else r >= 0.9,
    )
    r = _ratio(_get(m, "stages:loop", "transactional.records_per_s"), loop)
    add(
        "exactly-once >= 90% of transactions off: the loop, transactional / plain",
        _fmt(r and r * 100, "%"),
        None if r is None else r >= 0.9,
    )
    r = _ratio(
        _get(m, "stages:produce", "transactional.records_per_s"),
        _get(m, "stages:produce", "idempotent_flush_per_batch.records_per_s"),
    )
    add(
        "exactly-once >= 90% of transactions off: stage (c), TransactionalSink / idempotent "
        "producer flushed per batch",
        _fmt(r and r * 100, "%"),
        None if r is None else r >= 0.9,
    )
    cpu = _get(m, "e2e:0ms_c4", "cpu_us_per_record")
    add(
        "CPU per record end to end (connector process) <= 15 µs",
        _fmt(cpu, " µs", 1),
        None if cpu is None else cpu <= 15,
    )
    naive200 = _get(m, "naive:200ms", "records_per_s")
    for concurrency in (4, 8):
        rate = _get(m, f"e2e:200ms_c{concurrency}", "steady_records_per_s")
        goal = CONCURRENCY_FACTOR * concurrency * 1000 / (PER_PAGE_MS / 1000)
        add(
            f"200 ms per page, concurrency {concurrency}: >= {goal:,.0f} records/s (steady)",
            _fmt(rate),
            None if rate is None else rate >= goal,
        )
        r = _ratio(rate, naive200)
        add(
            f"200 ms per page, concurrency {concurrency}: >= 5x the naive client",
            f"{_fmt(r, 'x', 1)}",
            None if r is None else r >= 5,
        )
    peaks = [_get(m, f"e2e:{n}", "peak_rss_mb") for n in ("0ms_c4", "200ms_c4", "200ms_c8")]
    peak = max((p for p in peaks if p is not None), default=None)
    add(
        "peak RSS < 250 MB draining 1,000,000 records",
        _fmt(peak, " MB"),
        None if peak is None else peak < 250,
    )
    slope = _get(m, "soak:live", "slope_mb_per_hour")
    seconds = _get(m, "soak:live", "seconds")
    growth = slope * seconds / 3600 if slope is not None and seconds else None
    add(
        "memory flat over a 10-minute soak (trend over the soak < 5 MB)",
        f"{_fmt(slope, ' MB/h', 1)} ({_fmt(growth, ' MB', 1)} over the soak)",
        None if growth is None else growth < 5,
    )
    for kind, what in (
        ("injected", "calls posted as they end"),
        ("generated", "simulator's traffic, 3% written back 1-15 min late"),
    ):
        interval = _get(m, f"freshness:{kind}", "interval_s")
        for source, key in (("histogram", "p99_s"), ("read_committed consumer", "consumer_p99_s")):
            p99 = _get(m, f"freshness:{kind}", key)
            ok = None if p99 is None or interval is None else p99 <= interval + 2
            add(
                f"p99 freshness <= poll interval + 2 s at 500 calls/s ({what}; {source})",
                f"{_fmt(p99, ' s', 2)} (interval {_fmt(interval, ' s', 0)})",
                ok,
            )
    return rows


_FIGURES: tuple[tuple[str, str, str, str, int], ...] = (
    (
        "stages:fetch_c1",
        "(a) fetch + parse pages of 1000, 1 request in flight",
        "records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:fetch_c4",
        "(a) fetch + parse pages of 1000, 4 in flight",
        "records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:fetch_c4",
        "(a) client CPU per record, 4 in flight",
        "client_cpu_us_per_record",
        " µs",
        1,
    ),
    (
        "stages:encode",
        "(b) bill -> value (BillWriter as installed, mypyc build), one core",
        "writer_per_s",
        " records/s",
        0,
    ),
    ("stages:encode", "(b) the same, per record", "writer_us", " µs/record", 1),
    (
        "stages:encode",
        "(b) the same writer run from its Python source",
        "writer_source_us",
        " µs/record",
        1,
    ),
    ("stages:encode", "(b) general path: normalise + fastavro", "both_us", " µs/record", 1),
    ("stages:encode", "(b) of which normalise", "normalise_us", " µs/record", 1),
    ("stages:encode", "(b) of which Avro encode (compiled fastavro)", "encode_us", " µs/record", 1),
    (
        "stages:produce",
        "(c) produce pre-encoded: TransactionalSink, a transaction per 4000",
        "transactional.records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:produce",
        "(c) same messages: idempotent producer, flush per 4000",
        "idempotent_flush_per_batch.records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:produce",
        "(c) same messages: idempotent producer, flush at the end",
        "idempotent_flush_at_end.records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:produce",
        "(c) CPU per record, TransactionalSink",
        "transactional.cpu_us_per_record",
        " µs",
        1,
    ),
    (
        "stages:loop",
        "plain loop: parse, convert, produce (idempotent)",
        "plain.records_per_s",
        " records/s",
        0,
    ),
    (
        "stages:loop",
        "plain loop: CPU per record (all threads)",
        "plain.cpu_us_per_record",
        " µs",
        1,
    ),
    (
        "stages:loop",
        "same loop, transactional (a transaction per 4 pages)",
        "transactional.records_per_s",
        " records/s",
        0,
    ),
    *(
        (f"e2e:{name}", f"end to end, {what}: {label}", key, unit, digits)
        for name, what in (
            ("0ms_c4", "0 ms/page, concurrency 4"),
            ("200ms_c4", "200 ms/page, concurrency 4"),
            ("200ms_c8", "200 ms/page, concurrency 8"),
        )
        for label, key, unit, digits in (
            ("1,000,000 records from start", "records_per_s", " records/s", 0),
            ("steady (from the first commit)", "steady_records_per_s", " records/s", 0),
            ("CPU per record", "cpu_us_per_record", " µs", 1),
            ("of which Python threads", "thread_cpu_us_per_record.python", " µs", 1),
            (
                "of which librdkafka's broker threads",
                "thread_cpu_us_per_record.rdk:broker",
                " µs",
                1,
            ),
            ("CPU, share of one core", "cpu_share_of_a_core", "", 2),
            ("peak RSS", "peak_rss_mb", " MB", 0),
            ("the simulator's CPU per record", "simulator_cpu_us_per_record", " µs", 1),
            ("the broker's CPU per record", "broker_cpu_us_per_record", " µs", 1),
        )
    ),
    (
        "e2e:0ms_c4_untransacted",
        "end to end, 0 ms/page, concurrency 4, transactions switched off: steady",
        "steady_records_per_s",
        " records/s",
        0,
    ),
    (
        "e2e:0ms_c4_untransacted",
        "end to end, 0 ms/page, concurrency 4, transactions switched off: CPU per record",
        "cpu_us_per_record",
        " µs",
        1,
    ),
    (
        "framing:0ms_c4_confluent",
        "end to end, 0 ms/page, concurrency 4, Confluent framing (mock:// registry): steady",
        "steady_records_per_s",
        " records/s",
        0,
    ),
    (
        "framing:0ms_c4_confluent",
        "end to end, 0 ms/page, concurrency 4, Confluent framing: CPU per record",
        "cpu_us_per_record",
        " µs",
        1,
    ),
    ("naive:0ms", "naive client, 0 ms/page", "records_per_s", " records/s", 0),
    ("naive:0ms", "naive client, 0 ms/page: CPU per record", "cpu_us_per_record", " µs", 1),
    ("naive:0ms", "naive client, 0 ms/page: peak RSS", "peak_rss_mb", " MB", 0),
    ("naive:200ms", "naive client, 200 ms/page", "records_per_s", " records/s", 0),
    *(
        (f"freshness:{kind}", f"freshness, 500 calls/s {what}: {label}", key, unit, digits)
        for kind, what in (
            ("injected", "posted as they end"),
            ("generated", "by the simulator (PBX write-back delays included)"),
        )
        for label, key, unit, digits in (
            ("p50 call end -> commit (histogram)", "p50_s", " s", 2),
            ("p99 (histogram)", "p99_s", " s", 2),
            ("p50 call end -> read by a read_committed consumer", "consumer_p50_s", " s", 2),
            ("p99 (consumer)", "consumer_p99_s", " s", 2),
            ("connector CPU, share of one core", "cpu_share_of_a_core", "", 3),
        )
    ),
    (
        "soak:live",
        "soak: RSS trend (least squares, after the first periodic sweep)",
        "slope_mb_per_hour",
        " MB/h",
        1,
    ),
    ("soak:live", "soak: RSS at the end", "rss_last_mb", " MB", 1),
)


def figures_table(m: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| figure | median | runs | load (1 min) |", "|---|---|---|---|"]
    rows += [_row(m, row) for row in _FIGURES]
    return rows


def section(results: dict[str, Any]) -> str:
    m = medians(results)
    soak_note = ""
    if "soak:live" in m:
        soak = m["soak:live"]
        soak_note = f" The soak ran {soak['seconds']:.0f} s at {soak['rate']:.0f} calls/s."
    lines = [
        BEGIN,
        "## Figures",
        "",
        f"Measured {_measured(results)}: median of the runs, every part of a run "
        "on the same machine in the same hour. Machine: " + machine() + ". The simulator, the "
        "broker and the connector (or the naive client) share its cores; `load` is the 1-minute "
        f"load average when each figure was taken (2 cores: above 2 means busy).{soak_note}",
        "",
        *figures_table(m),
        "",
        "### Targets",
        "",
        *targets(m),
        END,
    ]
    return "\n".join(lines)


def _measured(results: dict[str, Any]) -> str:
    """When and how, one clause per separate bench command whose figures are in `results`."""
    provenance = results.get("provenance") or {"all": {
        "started": results["started"], "finished": results.get("finished", "?"),
        "runs": results["options"].get("runs", "?"), "parts": "all",
        "source": results.get("source", "?"),
    }}  # fmt: skip
    commands: dict[tuple[str, ...], list[str]] = {}
    for part, origin in provenance.items():
        key = tuple(str(origin[k]) for k in ("started", "finished", "runs", "parts", "source"))
        commands.setdefault(key, []).append(part)
    clauses = [
        f"{started[:10]} ({started[11:]} to {finished[11:]}) by `.venv/bin/python -m bench "
        f"--runs {runs} --parts {parts}` on cdr_connector at `{source}`"
        for (started, finished, runs, parts, source) in sorted(commands)
    ]
    return "; ".join(clauses)


def write_readme(results: dict[str, Any]) -> None:
    text = README.read_text(encoding="utf-8")
    new = section(results)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    README.write_text(text, encoding="utf-8")
