"""`cdr-connector check`: one line per dependency, exit 0 only when every check passes.

It never touches the transactional producer: initialising it would fence a running instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from cdr_connector.api import VendorApiClient
from cdr_connector.avro import build_encoder
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError
from cdr_connector.redaction import Redactor, without_userinfo
from cdr_connector.topics import survey_topics


async def run_checks(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    """Log in as every source (each line through its own source's redactor, which the API
    client also fills with the tokens it gets), then Kafka and the encoder."""
    sources = settings.per_source()
    checks: list[tuple[str, Callable[[], Awaitable[str]], Redactor]] = []
    for each in sources:
        redactor = Redactor.for_source(each.source)
        name = "vendor API login" if len(sources) == 1 else f"vendor API login ({each.source.name})"
        checks.append((name, partial(_check_login, each, redactor), redactor))
    shared = Redactor.for_source(settings.source)
    checks += [
        ("Kafka and topics", partial(asyncio.to_thread, check_kafka, settings), shared),
        ("Avro encoder", partial(asyncio.to_thread, _check_encoder, settings), shared),
    ]
    failed = 0
    for name, check, redactor in checks:
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


def check_kafka(settings: Settings) -> str:
    """Kafka reachable and its topics there or creatable; blocking."""
    kafka = settings.kafka
    # The same survey the connector makes at start-up, with a shorter wait for an answer.
    survey = survey_topics(settings, timeout=min(10.0, kafka.operation_timeout_seconds))
    survey.require_creatable()
    missing = survey.missing_names
    note = f"; {', '.join(missing)} will be created" if missing else ""
    return f"reached {kafka.bootstrap_servers}, topics {', '.join(survey.wanted_names)}{note}"


def _check_encoder(settings: Settings) -> str:
    encoder = build_encoder(settings)
    return f"schema {encoder.schema_tag}"
