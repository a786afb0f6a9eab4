"""Every librdkafka client of the connector is configured here, and made here.

Three kinds, one rule: the connector's own properties first, then the user's
`kafka.client_config` over them (security, tuning: it reaches every client unchanged), then
what a caller needs for its one purpose (`tail` starting at the end of a topic). The settings
that exactly-once depends on cannot be overridden by client_config: `config.py` refuses them
before any client is configured. librdkafka's own log lines go to the `cdr_connector.librdkafka`
logger of every client, so stdout stays JSON lines.

- the producer (`producer_config`): transactional, one per source, made by the sink, which
  adds its delivery callback;
- consumers (`new_consumer`): read_committed, no offsets committed; the state reader and
  `tail`;
- the admin client (`new_admin`): topic metadata and creation (`topics`).

`validate_client_config` asks librdkafka, without contacting a broker, whether it accepts the
configurations at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from cdr_connector.config import Settings
from cdr_connector.errors import ConfigError

LIBRDKAFKA_LOG = logging.getLogger("cdr_connector.librdkafka")
"""Where every client's librdkafka log lines go."""

# Not a child of the logging tree: nothing it gets reaches a handler.
_SILENT_LOG = logging.Logger("cdr_connector.librdkafka.config-check")
_SILENT_LOG.addHandler(logging.NullHandler())
_CLIENT_FAILED = re.compile(r"^Failed to create (producer|consumer): ")
_SASL_MECHANISMS = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"


def _client_config(
    settings: Settings, own: Mapping[str, Any], purpose: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The shared base and `own`, then `kafka.client_config`, then `purpose` (see the module)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "logger": LIBRDKAFKA_LOG,
        **own,
    }
    config.update(settings.kafka.client_config)
    config.update(purpose or {})
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    timeout_ms = int(kafka.transaction_timeout_seconds * 1000)
    own: dict[str, Any] = {
        "client.id": f"cdr-connector-{settings.source.name}",
        "transactional.id": settings.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": kafka.compression,
        # Java clients (Kafka Streams, ksqlDB) hash keys with murmur2: agree with them.
        "partitioner": "murmur2_random",
        "transaction.timeout.ms": timeout_ms,
        # A message must time out before its transaction does, or the broker aborts first.
        "message.timeout.ms": max(1000, timeout_ms - 5000),
        "queue.buffering.max.messages": kafka.queue_max_messages,
        "queue.buffering.max.kbytes": kafka.queue_max_kbytes,
        "linger.ms": 5,
        "delivery.report.only.error": True,
    }
    return _client_config(settings, own)


def consumer_config(
    settings: Settings, group_suffix: str, purpose: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A read_committed consumer in the group `cdr-connector-<source>-<group_suffix>`; the
    connector never commits offsets, it assigns partitions and reads them from a position."""
    own: dict[str, Any] = {
        "group.id": f"cdr-connector-{settings.source.name}-{group_suffix}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    return _client_config(settings, own, purpose)


def admin_config(settings: Settings) -> dict[str, Any]:
    return _client_config(settings, {})


def new_consumer(
    settings: Settings, group_suffix: str, purpose: Mapping[str, Any] | None = None
) -> Consumer:
    """A consumer of `consumer_config`; the caller closes it."""
    return Consumer(consumer_config(settings, group_suffix, purpose))


def new_admin(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))


def validate_client_config(settings: Settings) -> None:
    """Build the producer's and the consumer's librdkafka configuration without connecting.

    librdkafka checks every property (known, of the right type, in range, consistent with the
    others: a SASL mechanism it was built with, readable certificates) when a client is created,
    and only a client can be created to ask it. Made without `bootstrap.servers`, the clients
    never contact a broker. A refusal, nearly always from `kafka.client_config`, raises
    ConfigError naming it, so start-up stops with one line instead of a traceback.
    """
    makers: tuple[tuple[Callable[[dict[str, Any]], Any], dict[str, Any]], ...] = (
        (Producer, producer_config(settings)),
        (Consumer, consumer_config(settings, "config-check")),
    )
    client_config = settings.kafka.client_config
    for make, config in makers:
        config.pop("bootstrap.servers", None)
        config["logger"] = _SILENT_LOG  # not even a warning about the missing brokers
        try:
            client = make(config)
        except KafkaException as exc:
            raise ConfigError(_describe_refusal(exc.args[0].str(), client_config)) from None
        except (TypeError, ValueError) as exc:  # a Python-side property given a string
            raise ConfigError(_describe_refusal(str(exc), client_config)) from None
        if isinstance(client, Consumer):
            client.close()


def _describe_refusal(reason: str, client_config: Mapping[str, str]) -> str:
    """librdkafka's reason, without the values of client_config (a secret may be misplaced)."""
    reason = _CLIENT_FAILED.sub("", reason.strip())
    for value in client_config.values():
        if len(value) >= 4 and value.lower() not in ("true", "false") and not value.isdigit():
            reason = re.sub(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])", "(hidden)", reason)
    if "SASL mechanism GSSAPI" in reason and "sasl.mechanism" not in client_config:
        reason += f"; set sasl.mechanism ({_SASL_MECHANISMS}): Kerberos is not built in"
    return f"invalid settings: kafka.client_config: librdkafka refuses it: {reason}"
