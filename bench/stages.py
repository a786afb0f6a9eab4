"""Each stage of the connector alone, and the plain single-threaded loop; one JSON line each.

    python -m bench.stages fetch   --pages 300 --concurrency 4
    python -m bench.stages encode  --count 100000
    python -m bench.stages produce --bootstrap HOST:PORT --count 200000
    python -m bench.stages loop    --bootstrap HOST:PORT --pages 200

- `fetch` (stage a): the connector's own API client (`VendorApiClient.get_bills`, aiohttp,
  orjson, `BillPage`) reads syncflag=1 pages of 1000 from a simulator process, `concurrency`
  requests in flight, as the poller's rounds do.
- `encode` (stage b): `records.normalise` + `SingleObjectEncoder.encode` on bills generated
  by bench/encode.py, pinned to one core.
- `produce` (stage c): pre-encoded records (keys and headers as the connector sets them) in
  batches of one round (4 pages), through the connector's `TransactionalSink`, one
  transaction per batch; then a plain idempotent producer of the same configuration without
  transactions, flushing after every batch and only at the end.
- `loop`: pages fetched beforehand as raw bodies; then one thread parses, normalises, encodes
  and produces them, the reference for the end-to-end figure. Plain: idempotent producer,
  flushed at the end. Transactional: one transaction per 4 pages.

Each run is in a fresh process started by `python -m bench`, so the stages do not share a heap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.common import ACCESSKEY, APPID, PAGE_SIZE, simulator

ROUND_PAGES = 4
ZONE = ZoneInfo("Asia/Shanghai")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(bootstrap: str = "127.0.0.1:1", topic: str = "bench", api_url: str = "") -> Any:
    from cdr_connector.config import Settings

    source: dict[str, Any] = {"name": "bench", "appid": APPID, "accesskey": ACCESSKEY}
    if api_url:
        source["api_url"] = api_url
    return Settings(
        source=source,
        kafka={
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "transactional_id": f"bench-{uuid.uuid4().hex[:8]}",
        },
    )


# --- (a) fetch -----------------------------------------------------------------------------------


def fetch(pages: int, concurrency: int) -> dict[str, Any]:
    with simulator(f"fetch-c{concurrency}", backlog=pages * PAGE_SIZE) as sim:
        return asyncio.run(_fetch(sim.url, pages, concurrency))


async def _fetch(url: str, pages: int, concurrency: int) -> dict[str, Any]:
    from cdr_connector.api.client import VendorApiClient

    settings = _settings(api_url=url)
    poll = settings.poll.model_copy(update={"concurrency": concurrency})
    client = VendorApiClient(settings.source, poll)
    query = _live_query(settings)
    await client.login()
    records = 0
    cpu, began = _cpu(), time.perf_counter()
    try:
        for _ in range(pages // concurrency):
            answers = await asyncio.gather(*(client.get_bills(query) for _ in range(concurrency)))
            records += sum(len(a.bills) for a in answers)
        elapsed, cpu = time.perf_counter() - began, _cpu() - cpu
    finally:
        await client.close()
    return {
        "records": records,
        "seconds": elapsed,
        "records_per_s": records / elapsed,
        "client_cpu_us_per_record": cpu / records * 1e6,
    }


def _live_query(settings: Any) -> Any:
    """A syncflag=1 page 1 over the live window, as every request of a poller's round asks."""
    from cdr_connector.api import BillQuery

    now = datetime.now(ZONE)
    return BillQuery(
        start=now - timedelta(days=1),
        end=now + timedelta(hours=1),
        syncflag=1,
        page=1,
        page_size=PAGE_SIZE,
        filters=settings.source.filters,
    )


# --- (b) normalise + encode ----------------------------------------------------------------------


def encode(count: int) -> dict[str, Any]:
    from bench.encode import make_bills
    from cdr_connector.avro import SingleObjectEncoder, assert_compiled_fastavro
    from cdr_connector.records import RecordContext, normalise

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    assert_compiled_fastavro()
    bills = make_bills(count, 7)
    pages = [bills[i : i + PAGE_SIZE] for i in range(0, len(bills), PAGE_SIZE)]
    context = RecordContext("bench", ZONE, int(time.time() * 1000), "live")
    encoder = SingleObjectEncoder()
    records = [[normalise(bill, context) for bill in page] for page in pages]
    write = encoder.encode

    def normalise_only() -> None:
        for page in pages:
            [normalise(bill, context) for bill in page]

    def encode_only() -> None:
        for page in records:
            [write(record) for record in page]

    def both() -> None:
        for page in pages:
            [write(normalise(bill, context)) for bill in page]

    result: dict[str, Any] = {"records": count}
    for name, work in (("normalise", normalise_only), ("encode", encode_only), ("both", both)):
        best = min(_timed(work) for _ in range(3))
        result[f"{name}_per_s"] = count / best
        result[f"{name}_us"] = best / count * 1e6
    result["records_per_s"] = result["both_per_s"]
    return result


def _timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


# --- (c) produce ---------------------------------------------------------------------------------


def _encoded_messages(count: int, topic: str) -> list[Any]:
    """`count` records as the connector's OutgoingMessages (key, headers, timestamp)."""
    from bench.encode import make_bills
    from cdr_connector.avro import SingleObjectEncoder
    from cdr_connector.kafka_sink import OutgoingMessage
    from cdr_connector.records import RecordContext, normalise, record_key

    context = RecordContext("bench", ZONE, int(time.time() * 1000), "live")
    encoder = SingleObjectEncoder()
    messages = []
    for bill in make_bills(count, 1):
        record = normalise(bill, context)
        messages.append(
            OutgoingMessage(
                topic,
                record_key(record),
                encoder.encode(record),
                [
                    ("cdr.id", str(record["id"]).encode()),
                    ("cdr.source", b"bench"),
                    ("cdr.schema", encoder.schema_tag.encode()),
                ],
                record["endtime"],
            )
        )
    return messages


def produce(bootstrap: str, count: int) -> dict[str, Any]:
    topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    batch = ROUND_PAGES * PAGE_SIZE
    messages = _encoded_messages(batch, topic)
    batches = max(1, count // batch)
    result: dict[str, Any] = {"records": batches * batch}
    try:
        result["transactional"] = asyncio.run(
            _produce_transactional(bootstrap, topic, messages, batches)
        )
        result["idempotent_flush_per_batch"] = _produce_plain(
            bootstrap, topic, messages, batches, True
        )
        result["idempotent_flush_at_end"] = _produce_plain(
            bootstrap, topic, messages, batches, False
        )
    finally:
        _delete_topic(bootstrap, topic)
    result["records_per_s"] = result["transactional"]["records_per_s"]
    return result


async def _produce_transactional(
    bootstrap: str, topic: str, messages: list[Any], batches: int
) -> dict[str, Any]:
    from cdr_connector.kafka_sink import TransactionalSink

    sink = TransactionalSink(_settings(bootstrap, topic))
    await sink.start()
    try:
        await sink.commit(messages)  # warm-up: metadata, partitions, first transaction
        cpu, began = _cpu(), time.perf_counter()
        for _ in range(batches):
            await sink.commit(messages)
        return _rate(len(messages) * batches, time.perf_counter() - began, _cpu() - cpu)
    finally:
        await sink.close()


def _produce_plain(
    bootstrap: str, topic: str, messages: list[Any], batches: int, flush_each: bool
) -> dict[str, Any]:
    from confluent_kafka import Producer

    from cdr_connector.kafka_sink import producer_config

    config = producer_config(_settings(bootstrap, topic))
    del config["transactional.id"], config["transaction.timeout.ms"], config["logger"]
    producer = Producer(config)
    _produce_batch(producer, messages)  # warm-up
    producer.flush(30)
    cpu, began = _cpu(), time.perf_counter()
    for _ in range(batches):
        _produce_batch(producer, messages)
        if flush_each:
            producer.flush(30)
    producer.flush(60)
    return _rate(len(messages) * batches, time.perf_counter() - began, _cpu() - cpu)


def _produce_batch(producer: Any, messages: list[Any]) -> None:
    for m in messages:
        while True:
            try:
                producer.produce(
                    m.topic, m.value, m.key, headers=m.headers, timestamp=m.timestamp_ms
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)


def _rate(records: int, seconds: float, cpu: float) -> dict[str, Any]:
    return {
        "records_per_s": records / seconds,
        "seconds": seconds,
        "cpu_us_per_record": cpu / records * 1e6,
    }


def _create_topic(bootstrap: str, topic: str, partitions: int = 6) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result()


def _delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result()


# --- the plain single-threaded loop ---------------------------------------------------------


def loop(bootstrap: str, pages: int) -> dict[str, Any]:
    with simulator("loop", backlog=pages * PAGE_SIZE) as sim:
        bodies = asyncio.run(_raw_pages(sim.url, pages))
    topic = f"bench-loop-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    try:
        result: dict[str, Any] = {"records": pages * PAGE_SIZE}
        result["plain"] = _loop(bootstrap, topic, bodies, transactional=False)
        result["transactional"] = _loop(bootstrap, topic, bodies, transactional=True)
    finally:
        _delete_topic(bootstrap, topic)
    result["records_per_s"] = result["plain"]["records_per_s"]
    return result


async def _raw_pages(url: str, pages: int) -> list[bytes]:
    """Page bodies as they come off the wire, asked for with the connector's own form."""
    import aiohttp

    from cdr_connector.api.client import GET_BILL, LOGIN

    fields = {"service": GET_BILL, **_live_query(_settings(api_url=url)).as_form(ZONE)}
    async with aiohttp.ClientSession() as session:
        login = {"service": LOGIN, "appid": APPID, "accesskey": ACCESSKEY}
        async with session.post(url, data=login) as response:
            fields["token"] = orjson.loads(await response.read())["data"]["result"]["token"]
        bodies = []
        for _ in range(pages):
            async with session.post(url, data=fields) as response:
                bodies.append(await response.read())
    return bodies


def _loop(
    bootstrap: str, topic: str, bodies: list[bytes], *, transactional: bool
) -> dict[str, Any]:
    from confluent_kafka import Producer

    from cdr_connector.avro import SingleObjectEncoder
    from cdr_connector.kafka_sink import producer_config
    from cdr_connector.records import RecordContext, normalise, record_key

    config = producer_config(_settings(bootstrap, topic))
    del config["logger"]
    if not transactional:
        del config["transactional.id"], config["transaction.timeout.ms"]
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
    encoder = SingleObjectEncoder()
    zone = ZONE
    tag = encoder.schema_tag.encode()
    records = 0
    cpu, began = _cpu(), time.perf_counter()
    for index, body in enumerate(bodies):
        if transactional and index % ROUND_PAGES == 0:
            producer.begin_transaction()
        context = RecordContext("bench", zone, int(time.time() * 1000), "live")
        for bill in orjson.loads(body)["data"]["result"]["bills"]:
            record = normalise(bill, context)
            value = encoder.encode(record)
            headers: list[tuple[str, str | bytes | None]] = [
                ("cdr.id", str(record["id"]).encode()),
                ("cdr.source", b"bench"),
                ("cdr.schema", tag),
            ]
            while True:
                try:
                    producer.produce(
                        topic,
                        value,
                        record_key(record),
                        headers=headers,
                        timestamp=record["endtime"],
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            records += 1
        producer.poll(0)
        if transactional and (index % ROUND_PAGES == ROUND_PAGES - 1 or index == len(bodies) - 1):
            producer.commit_transaction(30)
    producer.flush(60)
    return _rate(records, time.perf_counter() - began, _cpu() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("stage", choices=("fetch", "encode", "produce", "loop"))
    parser.add_argument("--bootstrap", default="127.0.0.1:29092")
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    if args.stage == "fetch":
        result = fetch(args.pages, args.concurrency)
    elif args.stage == "encode":
        result = encode(args.count)
    elif args.stage == "produce":
        result = produce(args.bootstrap, args.count)
    else:
        result = loop(args.bootstrap, args.pages)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
