"""The environment the integration tests and the benchmarks give a connector process
(cdr_connector/simulator/connecting.py): the connector's own settings loader accepts it and
reads back what was asked for."""

from __future__ import annotations

import os

import pytest

from cdr_connector.config import Settings, load_settings
from cdr_connector.simulator.connecting import Topics, connector_env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What a child process given `env` would load (its CDR_ variables, none of ours)."""
    for name in [n for n in os.environ if n.startswith("CDR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("CDR_"):
            monkeypatch.setenv(name, value)
    return load_settings()


def test_the_settings_loader_reads_back_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    env = connector_env(
        "127.0.0.1:19092",
        "http://127.0.0.1:8080/api/",
        Topics.named("run7"),
        source="run7",
        http_port=9123,
        appid="app",
        accesskey="key-s3cr3t",
    )
    settings = settings_from(env, monkeypatch)
    assert settings.source.name == "run7"
    assert str(settings.source.api_url) == "http://127.0.0.1:8080/api/"
    assert settings.source.accesskey.get_secret_value() == "key-s3cr3t"
    kafka = settings.kafka
    assert (kafka.topic, kafka.dead_letter_topic, kafka.state_topic) == (
        "run7.calls",
        "run7.calls.dlq",
        "run7.state",
    )
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 9123)


def test_a_cdr_variable_of_the_caller_does_not_leak_and_extra_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDR_POLL__CONCURRENCY", "7")
    monkeypatch.setenv("UNRELATED_FOR_THE_CHILD", "kept")
    env = connector_env(
        "b:1",
        "http://127.0.0.1:1/",
        Topics("d", "dl", "s"),
        source="s",
        http_port=1,
        appid="a",
        accesskey="k",
        CDR_LOG__FORMAT="text",
        CDR_POLL__PAGE_SIZE="50",
    )
    assert "CDR_POLL__CONCURRENCY" not in env
    assert env["UNRELATED_FOR_THE_CHILD"] == "kept"
    assert env["CDR_LOG__FORMAT"] == "text"
    assert env["CDR_POLL__PAGE_SIZE"] == "50"
