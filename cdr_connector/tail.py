"""`cdr-connector tail`: committed records as JSON lines, for people debugging a pipeline."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any, TextIO

import orjson
from confluent_kafka import KafkaError as LibKafkaError
from confluent_kafka import KafkaException

from cdr_connector.avro import decode, registry_client
from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_clients import new_consumer


def tail(
    settings: Settings,
    *,
    from_beginning: bool = False,
    max_records: int = 0,
    idle_exit_seconds: float = 0.0,
    dead_letters: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Print records until interrupted, `max_records` were printed, or the topic stays idle."""
    purpose = {
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.partition.eof": False,
        # Notice a topic the connector creates after `tail` started within a second.
        "topic.metadata.refresh.interval.ms": 1000,
    }
    consumer = new_consumer(settings, f"tail-{uuid.uuid4().hex[:8]}", purpose)
    topic = settings.kafka.dead_letter_topic if dead_letters else settings.kafka.topic
    registry = registry_client(settings)
    printed = 0
    last_record = time.monotonic()
    try:
        consumer.subscribe([topic])
        while not max_records or printed < max_records:
            message = consumer.poll(0.5)
            if message is None:
                if idle_exit_seconds and time.monotonic() - last_record > idle_exit_seconds:
                    break
                continue
            error = message.error()
            if error is not None:
                if error.code() == LibKafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise KafkaException(error)
            last_record = time.monotonic()
            value = message.value() or b""
            line = _dead_letter_line(message) if dead_letters else decode(value, registry)
            out.write(orjson.dumps(line, default=str).decode() + "\n")
            out.flush()
            printed += 1
    except KafkaException as exc:
        raise KafkaTransientError(f"reading {topic}: {exc.args[0].str()}") from exc
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def _dead_letter_line(message: Any) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in (message.headers() or [])}
    return {"headers": headers, "value": message.value().decode(errors="replace")}
