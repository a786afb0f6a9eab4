"""Calls and billed seconds per extension per hour of dial time, from the connector's topic.

Reads every partition with `isolation.level=read_committed` through confluent-kafka's
`DeserializingConsumer`, up to the end each partition has when it is reached, and prints the
same JSON as the Kafka Streams example (examples/README.md):
`{"records": N, "totals": [{"extension", "hour", "calls", "billsec"}, ...]}`, sorted by
extension, then hour (UTC, ISO 8601).

Values of either framing are read: Avro single-object encoding with the schema file, Confluent
framing through the registry given by `--registry-url` (confluent-kafka's `AvroDeserializer`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, cast

import fastavro
import fastavro.schema
from confluent_kafka import OFFSET_BEGINNING, DeserializingConsumer, KafkaError, TopicPartition
from confluent_kafka.error import ConsumeError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import SerializationContext, SerializationError

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "cdr_record.avsc"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER = 10  # the magic and the schema's 8-byte fingerprint
CONFLUENT_MAGIC = b"\x00"

Totals = Counter[tuple[str, str]]


class TotalsError(Exception):
    """The topic could not be read to its end; the message says what to check."""


class CdrValueDeserializer:
    """A value of either framing -> the record as a dict (timestamps as aware datetimes)."""

    def __init__(self, schema_text: str, registry_url: str | None) -> None:
        raw = json.loads(schema_text)
        self._schema = fastavro.parse_schema(raw)
        canonical = fastavro.schema.to_parsing_canonical_form(raw)
        # CRC-64-AVRO of the canonical form, in the byte order the header carries it.
        self._header = SINGLE_OBJECT_MAGIC + bytes.fromhex(
            fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        )
        self._registry_url = registry_url
        self._confluent = (
            AvroDeserializer(SchemaRegistryClient({"url": registry_url}), schema_text)
            if registry_url
            else None
        )

    def __call__(self, value: bytes | None, ctx: SerializationContext) -> dict[str, Any]:
        if not value:
            raise SerializationError(f"an empty value in {ctx.topic} is not a record")
        if value.startswith(self._header):
            body = BytesIO(value[SINGLE_OBJECT_HEADER:])
            return cast(dict[str, Any], fastavro.schemaless_reader(body, self._schema, None))
        if value.startswith(SINGLE_OBJECT_MAGIC):
            raise SerializationError(
                f"a value of {ctx.topic} was written with another schema (fingerprint "
                f"{value[2:SINGLE_OBJECT_HEADER].hex()}): read it with --schema of that version"
            )
        if value.startswith(CONFLUENT_MAGIC):
            if self._confluent is None:
                raise SerializationError(
                    f"a value of {ctx.topic} is Confluent-framed: pass --registry-url, "
                    "the registry the connector writes to"
                )
            try:
                return cast(dict[str, Any], self._confluent(value, ctx))
            except Exception as exc:  # the registry's answer, or why there was none
                schema_id = int.from_bytes(value[1:5], "big")
                raise SerializationError(
                    f"schema id {schema_id} of a value of {ctx.topic}, from the registry "
                    f"{self._registry_url}: {exc}"
                ) from exc
        raise SerializationError(
            f"a value of {ctx.topic} starts with {value[:1].hex()}: neither Avro single-object "
            "encoding (c301) nor Confluent framing (00); is this the connector's records topic?"
        )


def hour_of(started: datetime) -> str:
    return started.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def add_call(totals: Totals, billsec: Totals, record: dict[str, Any]) -> None:
    key = (record["extnumber"], hour_of(record["starttime"]))
    totals[key] += 1
    billsec[key] += record["billsec"]


def report(calls: Totals, billsec: Totals) -> dict[str, Any]:
    rows = [
        {"extension": ext, "hour": hour, "calls": calls[ext, hour], "billsec": billsec[ext, hour]}
        for ext, hour in sorted(calls)
    ]
    return {"records": sum(calls.values()), "totals": rows}


def new_consumer(args: argparse.Namespace) -> DeserializingConsumer[Any, dict[str, Any]]:
    deserializer = CdrValueDeserializer(args.schema.read_text(encoding="utf-8"), args.registry_url)
    return DeserializingConsumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            # Partitions are assigned, not subscribed: the group is never joined or committed.
            "group.id": f"cdr-totals-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "value.deserializer": deserializer,
        }
    )


def read_totals(args: argparse.Namespace) -> dict[str, Any]:
    """Every committed record of the topic, up to each partition's end when reached."""
    consumer = new_consumer(args)
    calls: Totals = Counter()
    billsec: Totals = Counter()
    deadline = time.monotonic() + args.timeout_seconds
    try:
        topic = consumer.list_topics(args.topic, timeout=args.timeout_seconds).topics[args.topic]
        if topic.error is not None or not topic.partitions:
            raise TotalsError(f"topic {args.topic} cannot be read: {topic.error}")
        pending = set(topic.partitions)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            if time.monotonic() > deadline:
                raise TotalsError("the topic was not read to its end: raise --timeout-seconds")
            try:
                message = consumer.poll(0.5)
            except ConsumeError as exc:
                if exc.code != KafkaError._PARTITION_EOF or exc.kafka_message is None:
                    raise
                pending.discard(exc.kafka_message.partition())
                continue
            record = None if message is None else message.deserialized_value()
            if record is not None:
                add_call(calls, billsec, record)
    finally:
        consumer.close()
    return report(calls, billsec)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    parser.add_argument("--topic", default="cdr.calls")
    parser.add_argument(
        "--registry-url", help="Confluent-compatible registry, for Confluent-framed values"
    )
    parser.add_argument("--schema", type=Path, default=SCHEMA_FILE, help="the record schema")
    parser.add_argument("--timeout-seconds", type=float, default=120.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        totals = read_totals(args)
    except ConsumeError as exc:  # ValueDeserializationError too: the message is the reason
        print(f"cdr_totals: {exc.args[0].str()}", file=sys.stderr)
        return 1
    except TotalsError as exc:
        print(f"cdr_totals: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
