"""Runs the benchmarks side by side and writes their medians to bench/README.md.

    .venv/bin/python -m bench                      # everything, median of 3 runs
    .venv/bin/python -m bench --runs 1 --parts stages,e2e
    .venv/bin/python -m bench --parts soak --soak-seconds 600

Parts (in this order within each run, so every part of one run shares the machine's state):
  stages     (a) fetch + parse, (b) normalise + encode on one core, (c) produce pre-encoded
             messages, and the plain single-threaded loop over pre-fetched pages
  e2e        the connector process draining a 1,000,000-record backlog: no added latency at
             concurrency 4 (and again with transactions switched off, bench/untransacted.py),
             200 ms per page at concurrency 4 and 8
  framing    the 0 ms drain again with values in Confluent framing (mock:// registry)
  naive      the hand-written client on the same backlog, without and with 200 ms per page
  freshness  live traffic (500 calls/s): end-to-end latency from the connector's histogram
  soak       opt-in (--soak-seconds): RSS every 10 s under live traffic, and its trend

It starts its own broker (bench/.out/kafka, port 29092) unless --bootstrap names one, and
stops it at the end if it started it. Raw results of every run go to bench/.out/results.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import e2e
from bench.common import (
    OUT_DIR,
    load_average,
    run_json,
    start_broker,
    use_revision,
    use_source,
)
from bench.report import write_readme

PARTS = ("stages", "e2e", "framing", "naive", "freshness", "soak")
DEFAULT_PARTS = ("stages", "e2e", "framing", "naive", "freshness")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument(
        "--parts", default=",".join(DEFAULT_PARTS), help=f"comma-separated: {', '.join(PARTS)}"
    )
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument(
        "--naive-latency-seconds",
        type=float,
        default=60.0,
        help="the naive client with 200 ms per page reads for this long",
    )
    parser.add_argument("--fresh-rate", type=float, default=500.0, help="live calls/s")
    parser.add_argument("--fresh-interval", type=float, default=5.0, help="poll.interval_seconds")
    parser.add_argument("--fresh-seconds", type=float, default=60.0)
    parser.add_argument("--soak-seconds", type=float, default=0.0)
    parser.add_argument(
        "--soak-sweep-interval",
        type=float,
        default=300.0,
        help="poll.sweep_interval_seconds of the soaked connector (its default: 1800)",
    )
    parser.add_argument(
        "--soak-sweep-window",
        type=float,
        help="poll.sweep_window_seconds of the soaked connector (its default: 21600)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the connector while it drains"
    )
    parser.add_argument(
        "--revision", default="HEAD", help="git revision of cdr_connector/ to measure"
    )
    parser.add_argument(
        "--source-dir", type=Path, help="measure the cdr_connector/ inside DIR instead"
    )
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--kafka-port", type=int, default=29092)
    parser.add_argument("--results", type=Path, default=OUT_DIR / "results.json")
    parser.add_argument("--no-readme", action="store_true", help="do not touch bench/README.md")
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="rewrite bench/README.md from --results without running anything",
    )
    return parser


def main() -> int:
    args = _parser().parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.soak_seconds > 0 and "soak" not in parts:
        parts.append("soak")
    if args.readme_only:
        write_readme(orjson.loads(args.results.read_bytes()))
        return 0
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "options": {k: str(v) for k, v in vars(args).items()},
        "figures": {},
    }
    if args.results.exists():  # keep figures of parts not run now (a soak run on its own)
        previous = orjson.loads(args.results.read_bytes())
        results["figures"] = {
            k: v for k, v in previous.get("figures", {}).items() if _part_of(k) not in parts
        }
        # When and how each kept part was measured, for the README's header.
        earlier = previous.get("provenance", {})
        results["provenance"] = {
            part: earlier.get(part, _provenance(previous))
            for part in {_part_of(name) for name in results["figures"]}
        }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.source_dir is not None:
        use_source(args.source_dir.resolve())
        results["source"] = str(args.source_dir)
    else:
        results["source"] = f"{args.revision} = {use_revision(args.revision)}"
    broker = start_broker(args.kafka_port, args.bootstrap)
    print(f"bench: broker {broker.bootstrap}", file=sys.stderr)
    try:
        for run in range(1, args.runs + 1):
            for part in parts:
                if part == "soak" and run > 1:
                    continue
                for name, measure in _measures(part, args, broker.bootstrap, run):
                    load = load_average()
                    print(f"bench: run {run}/{args.runs} {name} (load {load:.2f})", file=sys.stderr)
                    figure = measure()
                    figure.setdefault("load", load_average())
                    results["figures"].setdefault(name, []).append(figure)
                    args.results.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
                    print(f"bench:   {_brief(figure)}", file=sys.stderr)
    finally:
        broker.stop()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    provenance = results.setdefault("provenance", {})
    provenance.update({part: _provenance(results) for part in parts})
    args.results.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not args.no_readme:
        write_readme(results)
    return 0


Measure = Callable[[], dict[str, Any]]


def _part_of(name: str) -> str:
    return name.split(":", 1)[0]


def _provenance(results: dict[str, Any]) -> dict[str, Any]:
    """When, with which options and on which code a results file's own parts were measured."""
    options = results.get("options", {})
    return {
        "started": results.get("started", "?"),
        "finished": results.get("finished", "?"),
        "runs": options.get("runs", "?"),
        "parts": options.get("parts", "?"),
        "source": results.get("source", "?"),
    }


def _measures(
    part: str, args: argparse.Namespace, bootstrap: str, run: int
) -> list[tuple[str, Measure]]:
    backlog = args.backlog
    profile_dir = OUT_DIR / "prof"

    def profile(name: str) -> Path | None:
        return profile_dir / f"{name}-run{run}.txt" if args.profile else None

    if part == "stages":
        kafka = ("--bootstrap", bootstrap)
        return [
            ("stages:fetch_c1", _stage("fetch", "--pages", "300", "--concurrency", "1")),
            ("stages:fetch_c4", _stage("fetch", "--pages", "400", "--concurrency", "4")),
            ("stages:encode", _stage("encode", "--count", "100000")),
            ("stages:produce", _stage("produce", *kafka, "--count", "200000")),
            ("stages:loop", _stage("loop", *kafka, "--pages", "200")),
        ]
    if part == "e2e":
        drains = [
            (f"e2e:{ms}ms_c{c}", _drain(bootstrap, backlog, ms, c, profile(f"e2e-{ms}ms-c{c}")))
            for ms, c in ((0, 4), (200, 4), (200, 8))
        ]
        # Right after the transactional drain it is compared with, on the same machine state.
        untransacted = _drain(bootstrap, backlog, 0, 4, None, transactions=False)
        return [drains[0], ("e2e:0ms_c4_untransacted", untransacted), *drains[1:]]
    if part == "framing":
        return [
            ("framing:0ms_c4_confluent", _drain(bootstrap, backlog, 0, 4, None, confluent=True))
        ]
    if part == "naive":
        return [
            ("naive:0ms", lambda: e2e.naive(bootstrap, backlog, latency_ms=0, max_seconds=3600)),
            (
                "naive:200ms",
                lambda: e2e.naive(
                    bootstrap, backlog, latency_ms=200, max_seconds=args.naive_latency_seconds
                ),
            ),
        ]
    if part == "freshness":
        return [
            (
                f"freshness:{kind}",
                _fresh(bootstrap, args.fresh_rate, args.fresh_interval, args.fresh_seconds, inject),
            )
            for kind, inject in (("injected", True), ("generated", False))
        ]
    return [
        (
            "soak:live",
            lambda: e2e.soak(
                bootstrap,
                seconds=args.soak_seconds,
                rate=args.fresh_rate,
                sweep_interval=args.soak_sweep_interval,
                sweep_window=args.soak_sweep_window,
            ),
        )
    ]


def _stage(*args: str) -> Measure:
    return lambda: run_json("bench.stages", *args)


def _fresh(bootstrap: str, rate: float, interval: float, seconds: float, inject: bool) -> Measure:
    return lambda: e2e.freshness(
        bootstrap, rate=rate, interval=interval, warmup=15.0, seconds=seconds, inject=inject
    )


def _drain(
    bootstrap: str,
    backlog: int,
    ms: int,
    concurrency: int,
    profile: Path | None,
    *,
    transactions: bool = True,
    confluent: bool = False,
) -> Measure:
    return lambda: e2e.drain(
        bootstrap,
        backlog,
        latency_ms=ms,
        concurrency=concurrency,
        profile=profile,
        transactions=transactions,
        confluent=confluent,
    )


def _brief(figure: dict[str, Any]) -> str:
    keys = (
        "records_per_s",
        "steady_records_per_s",
        "cpu_us_per_record",
        "peak_rss_mb",
        "p50_s",
        "p99_s",
        "slope_mb_per_hour",
    )
    return ", ".join(f"{k}={figure[k]:.4g}" for k in keys if isinstance(figure.get(k), float))


if __name__ == "__main__":
    sys.exit(main())
