"""`cdr-connector check`: one line per dependency, exit 0 only when every check passes.

It never touches the transactional producer: initialising it would fence a running instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cdr_connector.api import VendorApiClient
from cdr_connector.avro import build_encoder
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError
from cdr_connector.redaction import Redactor, without_userinfo
from cdr_connector.topics import survey_topics


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
    # The same survey the connector makes at start-up, with a shorter wait for an answer.
    survey = survey_topics(settings, timeout=min(10.0, kafka.operation_timeout_seconds))
    survey.require_creatable()
    missing = survey.missing_names
    note = f"; {', '.join(missing)} will be created" if missing else ""
    return f"reached {kafka.bootstrap_servers}, topics {', '.join(survey.wanted_names)}{note}"


def _check_encoder(settings: Settings) -> str:
    encoder = build_encoder(settings)
    return f"schema {encoder.schema_tag}"
