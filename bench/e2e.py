"""End-to-end runs of the connector process, the naive client, freshness and the memory soak.

Every run gets a fresh simulator process, a fresh connector process (its own source name, so
its own transactional.id and topics) and deletes its topics afterwards.

Draining a backlog: the connector's CPU (all threads, /proc/<pid>/stat) and its peak RSS
(VmHWM) are read from /proc. The clock starts when its /metrics port answers (login and topic
checks are done; the producer's `init_transactions` and the state read follow) and stops at
the connector's own `last_commit` time once `records_produced_total` reaches the backlog and
the simulator reports no unqueried record. "Steady" figures start at the first commit instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.common import (
    OUT_DIR,
    Connector,
    connector_env,
    cpu_seconds,
    delete_topics,
    free_port,
    load_average,
    memory_kb,
    own_broker_pid,
    run_json,
    simulator,
    thread_cpu_seconds,
)

PY_SPY = OUT_DIR / "tools" / "bin" / "py-spy"
_FAST_POLL, _SLOW_POLL = 0.05, 0.5


def _source(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:6]}"


def drain(
    bootstrap: str,
    backlog: int,
    *,
    latency_ms: float,
    concurrency: int,
    profile: Path | None = None,
    timeout: float = 1200.0,
    transactions: bool = True,
    confluent: bool = False,
) -> dict[str, Any]:
    """Records/s, CPU per record and peak RSS of the connector draining `backlog` records;
    without `transactions`, the same connector with a flush where each commit was; with
    `confluent`, values in Confluent framing, the schema registered with confluent-kafka's
    in-process `mock://` registry (a registry is consulted only at start-up)."""
    kind = f"drain{int(latency_ms)}c{concurrency}"
    kind += ("" if transactions else "notx") + ("cf" if confluent else "")
    source = _source(kind)
    load = load_average()
    with simulator(source, backlog=backlog, latency_ms=latency_ms) as sim:
        framing = {"CDR_AVRO__SCHEMA_REGISTRY_URL": f"mock://{source}"} if confluent else {}
        env = connector_env(
            bootstrap,
            sim.url,
            source,
            free_port(),
            CDR_POLL__CONCURRENCY=str(concurrency),
            **framing,
        )
        connector = Connector(
            source, env, "cdr_connector" if transactions else "bench.untransacted"
        )
        spy: subprocess.Popen[bytes] | None = None
        try:
            connector.wait_metrics()
            ready_at, ready_cpu = time.time(), cpu_seconds(connector.pid)
            ready_threads = thread_cpu_seconds(connector.pid)
            sim_ready_cpu = cpu_seconds(sim.process.pid)
            broker = own_broker_pid(bootstrap)
            broker_ready_cpu = cpu_seconds(broker) if broker else 0.0
            if profile is not None:
                spy = _start_py_spy(connector.pid, profile)
            first_at, first_cpu, first_count = ready_at, ready_cpu, 0.0
            produced, samples = 0.0, connector.metrics()
            deadline = time.monotonic() + timeout
            while True:
                connector.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{source}: {produced:.0f} of {backlog} after {timeout} s")
                samples = connector.metrics()
                produced = samples.get("cdr_connector_records_produced_total", 0.0)
                if first_count == 0 and produced > 0:
                    first_at, first_cpu, first_count = (
                        time.time(),
                        cpu_seconds(connector.pid),
                        produced,
                    )
                if produced >= backlog and sim.unqueried() == 0:
                    break
                time.sleep(_FAST_POLL if produced == 0 else _SLOW_POLL)
            end_cpu = cpu_seconds(connector.pid)
            end_threads = thread_cpu_seconds(connector.pid)
            sim_end_cpu = cpu_seconds(sim.process.pid)
            broker_end_cpu = cpu_seconds(broker) if broker else 0.0
            rss_kb, peak_kb = memory_kb(connector.pid)
            done_at = samples["cdr_connector_last_commit_timestamp_seconds"]
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            exit_code = connector.stop()
    delete_topics(bootstrap, source)
    steady = backlog - first_count
    return {
        "load": load,
        "records": produced,
        "seconds": done_at - ready_at,
        "records_per_s": backlog / (done_at - ready_at),
        "steady_records_per_s": steady / (done_at - first_at),
        "cpu_us_per_record": (end_cpu - ready_cpu) / backlog * 1e6,
        "steady_cpu_us_per_record": (end_cpu - first_cpu) / steady * 1e6,
        "cpu_share_of_a_core": (end_cpu - ready_cpu) / (done_at - ready_at),
        # The simulator shares the machine's cores with the connector and the broker.
        "simulator_cpu_us_per_record": (sim_end_cpu - sim_ready_cpu) / backlog * 1e6,
        # The broker's too (only one of our own; its other topics are idle meanwhile).
        **(
            {"broker_cpu_us_per_record": (broker_end_cpu - broker_ready_cpu) / backlog * 1e6}
            if broker
            else {}
        ),
        # Where the connector's CPU went: its Python threads, librdkafka's own threads.
        "thread_cpu_us_per_record": {
            name: (seconds - ready_threads.get(name, 0.0)) / backlog * 1e6
            for name, seconds in end_threads.items()
        },
        "peak_rss_mb": peak_kb / 1024,
        "rss_at_end_mb": rss_kb / 1024,
        # Requests over the whole run (login included), for the time a round spends waiting.
        "api_request_mean_ms": _mean_ms(samples, "cdr_connector_api_request_duration_seconds"),
        "exit_code": exit_code,
    }


def _mean_ms(samples: dict[str, float], histogram: str) -> float:
    count = samples.get(f"{histogram}_count", 0.0)
    return samples.get(f"{histogram}_sum", 0.0) / count * 1000 if count else 0.0


def _start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
         "--threads", "--nonblocking", "--output", str(output)],
        env={**os.environ, "PYTHONPATH": str(OUT_DIR / "tools")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def naive(bootstrap: str, backlog: int, *, latency_ms: float, max_seconds: float) -> dict[str, Any]:
    """The hand-written client (bench/naive.py) in its own process, same backlog."""
    source = _source(f"naive{int(latency_ms)}")
    load = load_average()
    with simulator(source, backlog=backlog, latency_ms=latency_ms) as sim:
        result = run_json(
            "bench.naive", "--url", sim.url, "--bootstrap", bootstrap,
            "--topic", f"{source}.calls", "--max-seconds", str(max_seconds),
        )  # fmt: skip
    delete_topics(bootstrap, source)
    result["load"] = load
    return result


def freshness(
    bootstrap: str,
    *,
    rate: float,
    interval: float,
    warmup: float,
    seconds: float,
    inject: bool,
) -> dict[str, Any]:
    """p50/p99 of call end -> commit from the connector's histogram, live traffic only.

    With `inject`, the calls are posted to /admin/inject at the second they end, so the
    figure is the connector's own delay (plus up to 1 s because bill times are whole
    seconds). Without it the simulator generates them (`--rate`), and 3% of its records are
    written back by the "PBX" 60-900 s after the call ended, as a real PBX does: that delay is
    the vendor's and dominates p99.

    The histogram is read after `warmup` and at the end and the difference is used, so the
    calls that piled up while the connector started do not count.
    """
    source = _source(f"fresh{'inj' if inject else 'gen'}{int(rate)}")
    with simulator(source, backlog=0, rate=0.0 if inject else rate) as sim:
        env = connector_env(
            bootstrap, sim.url, source, free_port(), CDR_POLL__INTERVAL_SECONDS=str(interval)
        )
        stop = threading.Event()
        injector = threading.Thread(target=_inject_calls, args=(sim.admin_url, rate, stop))
        window: list[float] = []  # [start, end] of the measured window, unix seconds
        latencies: list[float] = []
        reader = threading.Thread(
            target=_read_latencies,
            args=(bootstrap, env["CDR_KAFKA__TOPIC"], window, latencies, stop),
        )
        connector = Connector(source, env)
        try:
            if inject:
                injector.start()
            connector.wait_metrics()
            reader.start()
            time.sleep(warmup)
            load = load_average()
            before, cpu_before, at = connector.metrics(), cpu_seconds(connector.pid), time.time()
            window.append(at)
            time.sleep(seconds)
            after, cpu_after = connector.metrics(), cpu_seconds(connector.pid)
            elapsed = time.time() - at
            window.append(at + elapsed)
            rss_kb, peak_kb = memory_kb(connector.pid)
        finally:
            stop.set()
            for thread in (injector, reader):
                if thread.is_alive():
                    thread.join()
            connector.stop()
    delete_topics(bootstrap, source)
    buckets = _bucket_counts(before, after, "cdr_connector_end_to_end_latency_seconds")
    produced = after["cdr_connector_records_produced_total"] - before.get(
        "cdr_connector_records_produced_total", 0.0
    )
    return {
        "load": load,
        "interval_s": interval,
        "records": produced,
        "records_per_s": produced / elapsed,
        "p50_s": _quantile(buckets, 0.50),
        "p99_s": _quantile(buckets, 0.99),
        "consumer_p50_s": _exact_quantile(latencies, 0.50),
        "consumer_p99_s": _exact_quantile(latencies, 0.99),
        "consumer_records": len(latencies),
        "buckets": buckets,
        "cpu_share_of_a_core": (cpu_after - cpu_before) / elapsed,
        "cpu_us_per_record": (cpu_after - cpu_before) / max(1.0, produced) * 1e6,
        "peak_rss_mb": peak_kb / 1024,
        "rss_mb": rss_kb / 1024,
    }


_INJECT_EVERY = 0.1


def _read_latencies(
    bootstrap: str, topic: str, window: list[float], out: list[float], stop: threading.Event
) -> None:
    """Now minus each record's timestamp (its call's end), for records read with
    read_committed while the window is open: commit -> read adds a few ms (fetch.wait.max.ms
    10)."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        while not stop.is_set():
            for message in consumer.consume(1000, 0.1):
                now = time.time()
                if message.error() is None and len(window) == 1 and now >= window[0]:
                    out.append(now - message.timestamp()[1] / 1000)
    finally:
        consumer.close()


def _exact_quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _inject_calls(admin_url: str, rate: float, stop: threading.Event) -> None:
    """`rate` calls per second, each posted at the second it ends (PBX local time)."""
    from bench.encode import make_bills

    templates = make_bills(1000, 1)
    for bill in templates:
        del bill["id"]  # the simulator gives the next id
    zone = ZoneInfo("Asia/Shanghai")
    due, sent, owed = time.monotonic(), 0, 0.0
    while not stop.is_set():
        owed += rate * _INJECT_EVERY
        count, owed = int(owed), owed - int(owed)
        now = datetime.now(zone)
        bills = []
        for index in range(count):
            bill = dict(templates[(sent + index) % len(templates)])
            duration = int(bill["duration"])
            bill["endtime"] = now.strftime("%Y-%m-%d %H:%M:%S")
            bill["starttime"] = (now - timedelta(seconds=duration)).strftime("%Y-%m-%d %H:%M:%S")
            if bill["answertime"] is not None:
                talk = timedelta(seconds=bill["billsec"])
                bill["answertime"] = (now - talk).strftime("%Y-%m-%d %H:%M:%S")
            bills.append(bill)
        if bills:
            request = urllib.request.Request(
                f"{admin_url}inject",
                data=orjson.dumps(bills),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        sent += count
        due += _INJECT_EVERY
        time.sleep(max(0.0, due - time.monotonic()))


def _bucket_counts(
    before: dict[str, float], after: dict[str, float], name: str
) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the histogram's increase between two scrapes."""
    prefix = f"{name}_bucket{{le="
    bounds = sorted((float(key[len(prefix) : -1]), key) for key in after if key.startswith(prefix))
    return [(bound, after[key] - before.get(key, 0.0)) for bound, key in bounds]


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket that holds the quantile."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside)
        lower_bound, lower_count = bound, count
    return lower_bound


def soak(
    bootstrap: str,
    *,
    seconds: float,
    rate: float,
    every: float = 10.0,
    sweep_interval: float = 300.0,
    sweep_window: float | None = None,
) -> dict[str, Any]:
    """RSS every `every` seconds under live traffic, and its least-squares slope."""
    source = _source("soak")
    samples: list[tuple[float, float]] = []
    with simulator(source, backlog=0, rate=rate) as sim:
        # Sweeps every 300 s by default (the connector's default is rarer), so that a short
        # soak sees several of them.
        env = connector_env(
            bootstrap,
            sim.url,
            source,
            free_port(),
            CDR_POLL__SWEEP_INTERVAL_SECONDS=str(sweep_interval),
        )
        if sweep_window is not None:
            # A shorter window fills sooner: what a soak of many hours would show at the
            # default window, a shorter soak shows with a window it outlasts.
            env["CDR_POLL__SWEEP_WINDOW_SECONDS"] = str(sweep_window)
        connector = Connector(source, env)
        try:
            connector.wait_metrics()
            began = time.monotonic()
            load = load_average()
            while (elapsed := time.monotonic() - began) < seconds:
                connector.check_alive()
                samples.append((elapsed, memory_kb(connector.pid)[0] / 1024))
                print(f"soak: {elapsed:5.0f} s  RSS {samples[-1][1]:6.1f} MB", file=sys.stderr)
                time.sleep(every)
            produced = connector.produced()
            peak_kb = memory_kb(connector.pid)[1]
        finally:
            connector.stop()
    delete_topics(bootstrap, source)
    # The first periodic sweep (poll.sweep_interval_seconds) lists every record of the sweep
    # window once: a one-off step of the heap, not a trend. The trend is fitted after it when
    # the soak is long enough.
    settled_from = sweep_interval + 30.0 if seconds >= 2 * sweep_interval else 60.0
    settled = [s for s in samples if s[0] >= settled_from] or samples
    return {
        "load": load,
        "seconds": seconds,
        "rate": rate,
        "records": produced,
        "rss_first_mb": samples[0][1],
        "rss_settled_first_mb": settled[0][1],
        "rss_last_mb": samples[-1][1],
        "peak_rss_mb": peak_kb / 1024,
        "slope_mb_per_hour": _slope(settled) * 3600,
        "slope_from_s": settled_from,
        "sweep_interval_s": sweep_interval,
        "sweep_window_s": sweep_window,
        "slope_whole_soak_mb_per_hour": _slope(samples) * 3600,
        "samples": samples,
    }


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
