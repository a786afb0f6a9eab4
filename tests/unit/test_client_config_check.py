"""kafka.client_config is checked by librdkafka itself at start-up, without reaching a broker."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from confluent_kafka import Consumer

from cdr_connector import kafka_clients
from cdr_connector.config import Settings
from cdr_connector.errors import ConfigError
from cdr_connector.kafka_clients import validate_client_config


def settings(client_config: dict[str, str], **kafka: Any) -> Settings:
    return Settings(
        source={"appid": "a", "accesskey": "k"},
        kafka={"client_config": client_config, **kafka},
    )


def refusal(client_config: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_client_config(settings(client_config))
    message = str(caught.value)
    assert message.startswith("invalid settings: kafka.client_config: ")
    assert "\n" not in message
    return message


def test_an_unknown_property_is_named() -> None:
    assert 'No such configuration property: "sasl.pasword"' in refusal({"sasl.pasword": "x"})


def test_sasl_ssl_without_a_mechanism_says_to_set_one() -> None:
    message = refusal({"security.protocol": "SASL_SSL"})
    assert "set sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)" in message


def test_a_value_out_of_librdkafkas_range_is_named() -> None:
    assert '"queue.buffering.max.ms"' in refusal({"queue.buffering.max.ms": "99999999"})


def test_the_consumers_configuration_is_checked_too() -> None:
    """A conflict only a consumer has: fetch.max.bytes below message.max.bytes."""
    message = refusal({"fetch.max.bytes": "1000", "message.max.bytes": "5000"})
    assert "fetch.max.bytes" in message


@pytest.mark.parametrize(
    "client_config",
    [
        {"security.protocol": "correct-horse-battery"},
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "correct-horse-battery"},
    ],
)
def test_values_are_never_echoed(client_config: dict[str, str]) -> None:
    message = refusal(client_config)
    assert "correct-horse-battery" not in message
    assert "(hidden)" in message or "Invalid value for" in message


def test_a_working_configuration_passes() -> None:
    validate_client_config(
        settings(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "cdr-connector",
                "sasl.password": "secret",
                "linger.ms": "20",
                "fetch.max.bytes": "52428800",
            }
        )
    )
    validate_client_config(settings({}))


def test_no_broker_is_contacted() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(1.0)
        port = listener.getsockname()[1]
        validate_client_config(settings({}, bootstrap_servers=f"127.0.0.1:{port}"))
        with pytest.raises(TimeoutError):
            listener.accept()


def test_the_consumer_made_for_the_check_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []

    class Watched(Consumer):
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config)
            self.closed = False
            made.append(self)

        def close(self) -> None:  # type: ignore[override]
            self.closed = True
            super().close()

    monkeypatch.setattr(kafka_clients, "Consumer", Watched)
    validate_client_config(settings({}))
    assert [consumer.closed for consumer in made] == [True]


def test_the_check_says_nothing_of_the_brokers_it_was_not_given(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    validate_client_config(settings({}))
    assert capsys.readouterr().err == ""
    assert caplog.records == []


def test_words_and_numbers_of_librdkafkas_own_reason_are_kept() -> None:
    """Only values that could be secrets are hidden: `true`, `false` and numbers, which
    librdkafka's reasons use themselves, stay readable even when client_config holds them."""
    message = refusal({"enable.auto.commit": "maybe", "socket.keepalive.enable": "true"})
    assert message.endswith('Expected bool value for "enable.auto.commit": true or false')


@pytest.mark.parametrize("callback", ["error_cb", "on_delivery"])
def test_a_callback_property_given_as_text_is_refused_naming_it(callback: str) -> None:
    """confluent-kafka's own properties take Python callables; TOML can only give text."""
    assert callback in refusal({callback: "print"})


def test_values_from_four_characters_on_are_hidden_shorter_ones_are_not() -> None:
    """A secret has at least 4 characters; shorter values would mask common words."""
    assert refusal({"security.protocol": "wxyz"}).endswith(
        'Invalid value "(hidden)" for configuration property "security.protocol"'
    )
    assert refusal({"security.protocol": "xyz"}).endswith(
        'Invalid value "xyz" for configuration property "security.protocol"'
    )
