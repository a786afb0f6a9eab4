"""Security settings: Kafka's SASL/SSL settings reach every Kafka client unchanged, the settings
that exactly-once depends on cannot be overridden, HTTPS to the vendor is verified by default
(against a custom CA when one is given), and no secret is echoed by a settings error or an API
error."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from cdr_connector import kafka_clients, topics
from cdr_connector.api import VendorApiClient, tls_option
from cdr_connector.config import PollSettings, Settings, SourceSettings, load_settings
from cdr_connector.errors import ApiTransientError, ConfigError, KafkaTransientError
from tests.integration.harness import free_port
from tests.unit.test_api_client import write_self_signed_certificate

SECRET = "k4fka-and-vendor-s3cret"
SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "cdr-connector",
    "sasl.password": SECRET,
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "ssl.certificate.location": "/etc/kafka/client.pem",
    "ssl.key.location": "/etc/kafka/client.key",
    "ssl.endpoint.identification.algorithm": "https",
}
GUARANTEES = {
    "enable.idempotence": "false",
    "acks": "1",
    "transactional.id": "someone-else",
    "isolation.level": "read_uncommitted",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDR_"):
            monkeypatch.delenv(name)


def settings(**kafka: Any) -> Settings:
    source = {"appid": "a", "accesskey": SECRET, "api_url": "https://vendor.example/api"}
    return load_settings(source=source, kafka=kafka)


# --- Kafka ----------------------------------------------------------------------------------


def test_sasl_and_ssl_settings_reach_the_producer_unchanged() -> None:
    config = kafka_clients.producer_config(settings(client_config=SECURITY))
    assert {key: config[key] for key in SECURITY} == SECURITY
    # and the guarantees are still the connector's own
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["transactional.id"] == "cdr-connector-default"


def test_sasl_and_ssl_settings_reach_the_state_consumer_and_the_topic_admin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current = settings(client_config=SECURITY)
    consumer = kafka_clients.consumer_config(current, "state")
    assert {key: consumer[key] for key in SECURITY} == SECURITY
    assert consumer["isolation.level"] == "read_committed"

    seen: list[dict[str, Any]] = []

    class RecordingAdmin:
        def __init__(self, config: dict[str, Any]) -> None:
            seen.append(config)

        def list_topics(self, timeout: float) -> Any:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    monkeypatch.setattr(kafka_clients, "AdminClient", RecordingAdmin)
    with pytest.raises(KafkaTransientError, match="cannot reach Kafka"):
        topics.ensure_topics(current)
    assert [{key: config[key] for key in SECURITY} for config in seen] == [SECURITY]


@pytest.mark.parametrize(("key", "value"), list(GUARANTEES.items()))
def test_the_settings_exactly_once_depends_on_cannot_be_overridden(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(client_config={**SECURITY, key: value})
    message = str(raised.value)
    assert f"kafka.client_config: {key} cannot be overridden" in message
    assert SECRET not in message  # the SASL password next to the bad key is not echoed


# --- HTTPS to the vendor --------------------------------------------------------------------


def test_certificates_are_verified_by_default() -> None:
    source = settings().source
    assert source.verify_tls is True
    assert source.ca_file is None
    assert tls_option(source) is True  # aiohttp verifies against the system's CAs


def test_a_custom_ca_is_the_only_trust_anchor_and_hostnames_are_checked(tmp_path: Path) -> None:
    cert, _ = write_self_signed_certificate(tmp_path)
    source = load_settings(
        source={"appid": "a", "accesskey": SECRET, "api_url": "https://127.0.0.1/", "ca_file": cert}
    ).source
    context = tls_option(source)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert len(context.get_ca_certs()) == 1


def test_switching_verification_off_is_explicit_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = SourceSettings(
        appid="a", accesskey=SECRET, api_url="https://vendor.example/api", verify_tls=False
    )
    assert tls_option(source) is False
    assert "NOT verified" in caplog.text


# --- no secret in errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"source": {"appid": "a", "accesskey": SECRET, "name": SECRET + "!"}},
        {"source": {"appid": "a", "accesskey": "k", "timezone": SECRET}},
        {"source": {"appid": "a", "accesskey": "k", "api_url": SECRET}},
        {"source": {"appid": "a", "accesskey": "k"}, "poll": {"page_size": SECRET}},
        {"source": {"appid": "a", "accesskey": "k", "acesskey": SECRET}},
        {"source": {"appid": "a", "accesskey": "k"}, "kafka": {"compression": SECRET}},
        {"source": {"appid": "a", "accesskey": "k"}, "kafka": {"client_config": SECRET}},
    ],
    ids=["name", "timezone", "api_url", "page_size", "misspelt key", "compression", "dict"],
)
def test_a_settings_error_names_the_key_but_never_echoes_the_value(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**overrides)
    message = str(raised.value)
    assert message.startswith("invalid settings: ")
    assert SECRET not in message


def test_the_access_key_is_not_in_the_settings_repr() -> None:
    current = settings(client_config=SECURITY)
    assert SECRET not in repr(current.source)
    assert current.source.accesskey.get_secret_value() == SECRET


async def test_an_api_error_does_not_echo_credentials_in_the_url() -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}/"
    source = SourceSettings(appid="a", accesskey=SECRET, api_url=url, request_timeout_seconds=2)
    client = VendorApiClient(source, PollSettings(max_attempts=1, retry_initial_seconds=0.01))
    try:
        with pytest.raises(ApiTransientError) as raised:
            await client.login()
    finally:
        await client.close()
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(raised.value.__cause__ or "")
