"""Alternating drains of two revisions: records/s and CPU per record, old, new, old, new, ...

A change's effect on throughput is smaller than the drift of a shared machine over minutes;
alternating the two revisions run by run puts both under the same drift. Usage:

    .venv/bin/python -m bench.alternate OLD NEW [--runs 3] [--records 300000]
        [--latency-ms 0] [--concurrency 4] [--bootstrap HOST:PORT]

Prints one line per drain and the medians of each revision at the end, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench.common import start_broker, use_revision
from bench.e2e import drain


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.alternate", description=__doc__)
    parser.add_argument("old", help="git revision measured first in each pair")
    parser.add_argument("new", help="git revision measured second in each pair")
    parser.add_argument("--runs", type=int, default=3, help="drains of each revision")
    parser.add_argument("--records", type=int, default=300_000, help="backlog per drain")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator latency")
    parser.add_argument("--concurrency", type=int, default=4, help="poll.concurrency")
    parser.add_argument("--bootstrap", help="an already running broker (default: bench's own)")
    parser.add_argument("--kafka-port", type=int, default=29092, help="port of bench's broker")
    return parser.parse_args(argv)


def _figures(result: dict[str, Any]) -> dict[str, float]:
    return {
        "records_per_s": round(result["records_per_s"]),
        "cpu_us_per_record": round(result["cpu_us_per_record"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    runs: dict[str, list[dict[str, float]]] = {args.old: [], args.new: []}
    broker = start_broker(args.kafka_port, args.bootstrap)
    try:
        for _ in range(args.runs):
            for revision in (args.old, args.new):
                commit = use_revision(revision)
                result = drain(
                    broker.bootstrap,
                    args.records,
                    latency_ms=args.latency_ms,
                    concurrency=args.concurrency,
                )
                figures = _figures(result)
                runs[revision].append(figures)
                line = {"revision": revision, "commit": commit[:7]} | figures
                print(json.dumps(line), flush=True)
    finally:
        broker.stop()
    medians = {
        revision: {
            name: statistics.median(run[name] for run in figures)
            for name in ("records_per_s", "cpu_us_per_record")
        }
        for revision, figures in runs.items()
    }
    print(json.dumps({"runs": runs, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
