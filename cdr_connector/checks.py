"""`cdr-connector check`: one line per dependency, exit 0 only when every check passes.

It never touches the transactional producer: initialising it would fence a running instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cdr_connector.api import VendorApiClient
from cdr_connector.avro import build_encoder
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError
from cdr_connector.kafka_sink import admin_config
from cdr_connector.redaction import Redactor, without_userinfo


async def run_checks(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    # Every line passes the redactor the API client fills (with the tokens it gets, too).
    redactor = Redactor.for_source(settings.source)
    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("vendor API login", lambda: _check_login(settings, redactor)),
        ("Kafka and topics", lambda: asyncio.to_thread(_check_kafka, settings)),
        ("Avro encoder", lambda: asyncio.to_thread(_check_encoder, settings)),
    ]
    failed = 0
    for name, check in checks:
        try:
            detail = await check()
            out(redactor(f"ok   {name}: {detail}"))
        except CdrConnectorError as exc:
            failed += 1
            out(redactor(f"FAIL {name}: {exc}"))
    return 1 if failed else 0


async def _check_login(settings: Settings, redactor: Redactor) -> str:
    api = VendorApiClient(settings.source, settings.poll, redactor=redactor)
    try:
        await api.login()
    finally:
        await api.close()
    url = without_userinfo(str(settings.source.api_url))
    return f"logged in to {url} as appid {settings.source.appid}"


def _check_kafka(settings: Settings) -> str:
    kafka = settings.kafka
    try:
        admin = AdminClient(admin_config(settings))
        topics = admin.list_topics(timeout=min(10.0, kafka.operation_timeout_seconds)).topics
    except KafkaException as exc:
        raise CdrConnectorError(
            f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc.args[0].str()}"
        ) from exc
    wanted = (kafka.topic, kafka.dead_letter_topic, kafka.state_topic)
    missing = [t for t in wanted if t not in topics]
    if missing and not kafka.create_topics:
        raise CdrConnectorError(
            f"topic(s) {', '.join(missing)} missing and kafka.create_topics is false"
        )
    note = f"; {', '.join(missing)} will be created" if missing else ""
    return f"reached {kafka.bootstrap_servers}, topics {', '.join(wanted)}{note}"


def _check_encoder(settings: Settings) -> str:
    encoder = build_encoder(settings)
    return f"schema {encoder.schema_tag}"
