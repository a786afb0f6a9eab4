"""Records per second through normalise and Avro encoding, on one core.

    PYTHONPATH=. .venv/bin/python bench/encode.py [--count 100000] [--days 7] [--page-size 1000]

Bills are generated in memory from a fixed seed with the vendor's field mix (answered and
unanswered calls, IVR calls without extension, Chinese custom data, some numbers as strings)
and passed through orjson once, so they are the fresh objects a parsed page holds. Their start
times spread over `--days` days of Asia/Shanghai local time, so the hourly offset cache sees
as many hours as a backfill of that length would. Work is done a page at a time and each
page's results are dropped before the next, as the connector does; one list of all results
would make the garbage collector the main cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cdr_connector.avro import (
    ConfluentEncoder,
    RecordEncoder,
    SingleObjectEncoder,
    assert_compiled_fastavro,
)
from cdr_connector.records import RecordContext, normalise

ZONE = ZoneInfo("Asia/Shanghai")
_NAMES = ("王伟", "李娜", "张敏", "刘洋", "陈静", "Alice", "Bob", "E1001", "E1002", "客户-赵强")
_CAUSES_ANSWERED = (10001, 10001, 10001, 10007, 10020)
_CAUSES_UNANSWERED = (10002, 10016, 10006, 10003, 10005, 10009)


def make_bills(count: int, days: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    first = dt.datetime(2024, 5, 1)
    span = days * 86_400
    bills = [_bill(rng, 1_000_000 + index, first, span) for index in range(count)]
    return list(orjson.loads(orjson.dumps(bills)))


def _bill(rng: random.Random, record_id: int, first: dt.datetime, span: int) -> dict[str, Any]:
    start = first + dt.timedelta(seconds=rng.randrange(span))
    ring = rng.randint(1, 40)
    answered = rng.random() < 0.6
    billsec = min(7200, int(rng.lognormvariate(4.2, 1.2))) + 1 if answered else 0
    method = rng.choice((1, 2, 3, 3, 4, 5, 6))
    extension = "" if method == 6 and rng.random() < 0.5 else str(8000 + rng.randrange(200))
    api = method in (3, 4, 5)
    bill: dict[str, Any] = {
        "id": record_id,
        "extnumber": extension,
        "destnumber": f"1{rng.choice('35789')}{rng.randrange(10**9):09d}",
        "displaynumber": f"021{rng.randrange(10**8):08d}",
        "starttime": _local(start),
        "answertime": _local(start + dt.timedelta(seconds=ring)) if answered else None,
        "endtime": _local(start + dt.timedelta(seconds=ring + billsec)),
        "duration": ring + billsec,
        "billsec": billsec,
        "direction": rng.choice(("callout", "callout", "callin")),
        "callmethod": method,
        "userid": rng.choice(_NAMES) if api else "0",
        "memberid": f"M{rng.randrange(10**7):07d}" if api else "0",
        "chengshudu": rng.choice(("A", "B", "C", "意向")) if api else "0",
        "customuuid": f"{rng.getrandbits(128):032x}" if api else "0",
        "recordfilename": f"{start:%Y%m%d}/{extension}-{record_id}.wav" if answered else "",
        "downloadip": "10.20.30.40" if answered else "",
        "hangupdirection": rng.choice((10040, 10041, 10007)),
        "hangupcause": rng.choice(_CAUSES_ANSWERED if answered else _CAUSES_UNANSWERED),
        "userkey": rng.choice(("", "1", "2", "#")) if method == 6 else "",
    }
    if rng.random() < 0.1:  # the vendor is loose: some numbers arrive as strings
        bill["duration"] = str(bill["duration"])
        bill["id"] = str(record_id)
    return bill


def _local(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def measure(label: str, count: int, run: Callable[[], object]) -> float:
    best = min(_timed(run) for _ in range(3))
    print(f"{label:<34} {count / best:>10,.0f} records/s  {best / count * 1e6:6.2f} µs/record")
    return best


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    assert_compiled_fastavro()

    bills = make_bills(args.count, args.days)
    context = RecordContext("bench", ZONE, int(time.time() * 1000), "backfill")
    bill_pages = _pages(bills, args.page_size)
    record_pages = [[normalise(bill, context) for bill in page] for page in bill_pages]
    encoders: list[tuple[str, RecordEncoder]] = [
        ("single-object", SingleObjectEncoder()),
        ("confluent", ConfluentEncoder.create("mock://bench", {}, "cdr.calls")),
    ]
    count = len(bills)
    print(f"{count:,} bills over {args.days} days in pages of {args.page_size}, one core")
    measure("normalise", count, _normalise_all(bill_pages, context))
    for name, encoder in encoders:
        measure(f"encode ({name})", count, _encode_all(encoder, record_pages))
    for name, encoder in encoders:
        measure(f"normalise + encode ({name})", count, _convert_all(encoder, bill_pages, context))


Pages = list[list[dict[str, Any]]]


def _pages(items: list[dict[str, Any]], size: int) -> Pages:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _normalise_all(pages: Pages, context: RecordContext) -> Callable[[], None]:
    def run() -> None:
        for page in pages:
            [normalise(bill, context) for bill in page]

    return run


def _encode_all(encoder: RecordEncoder, pages: Pages) -> Callable[[], None]:
    encode = encoder.encode

    def run() -> None:
        for page in pages:
            [encode(record) for record in page]

    return run


def _convert_all(
    encoder: RecordEncoder, pages: Pages, context: RecordContext
) -> Callable[[], None]:
    encode = encoder.encode

    def run() -> None:
        for page in pages:
            [encode(normalise(bill, context)) for bill in page]

    return run


if __name__ == "__main__":
    main()
