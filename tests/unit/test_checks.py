"""`check`'s lines and exit code, with the login, Kafka's survey and the encoder scripted."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.cimpl import NewTopic

from cdr_connector import checks
from cdr_connector.api import VendorApiClient
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.checks import check_kafka, run_checks
from cdr_connector.config import Settings
from cdr_connector.errors import ApiAuthError, KafkaTransientError, TopicMissingError
from cdr_connector.topics import TopicSurvey
from tests.fakes import make_settings

URL = "https://vendor.example/api"


def account(name: str) -> dict[str, Any]:
    return {"name": name, "appid": f"app-{name}", "accesskey": f"key-{name}", "api_url": URL}


class _Checked:
    """Scripted outcomes of the three kinds of check, and what each was asked."""

    def __init__(self) -> None:
        self.refused: dict[str, Exception] = {}  # appid -> the login's error
        self.kafka_error: Exception | None = None
        self.missing: list[str] = []
        self.survey_timeouts: list[float | None] = []
        self.closed = 0

    async def login(self, api: VendorApiClient) -> None:
        error = self.refused.get(api._source.appid)
        if error is not None:
            raise error

    def survey(self, settings: Settings, timeout: float | None = None) -> TopicSurvey:
        self.survey_timeouts.append(timeout)
        if self.kafka_error is not None:
            raise self.kafka_error
        wanted = [NewTopic(name, 1, 1) for name in ("cdr", "cdr.dlq", "cdr.state")]
        missing = [spec for spec in wanted if spec.topic in self.missing]
        return TopicSurvey(wanted, missing, settings.kafka.create_topics)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> _Checked:
    scripted = _Checked()

    async def login(api: VendorApiClient) -> None:
        await scripted.login(api)

    async def close(api: VendorApiClient) -> None:
        scripted.closed += 1

    monkeypatch.setattr(VendorApiClient, "login", login)
    monkeypatch.setattr(VendorApiClient, "close", close)
    monkeypatch.setattr(checks, "survey_topics", scripted.survey)
    monkeypatch.setattr(checks, "build_encoder", lambda settings: SingleObjectEncoder())
    return scripted


async def _run(settings: Settings) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = await run_checks(settings, out=lines.append)
    return code, lines


async def test_every_check_passing_is_a_line_each_and_exit_0(checked: _Checked) -> None:
    settings = make_settings(
        source_settings={"api_url": URL}, kafka={"bootstrap_servers": "kafka-1:9092"}
    )

    code, lines = await _run(settings)

    assert code == 0
    assert lines == [
        f"ok   vendor API login: logged in to {URL} as appid a",
        "ok   Kafka and topics: reached kafka-1:9092, topics cdr, cdr.dlq, cdr.state",
        f"ok   Avro encoder: schema {SingleObjectEncoder().schema_tag}",
    ]
    assert checked.closed == 1


async def test_each_source_logs_in_under_its_name_and_one_refused_fails_only_its_line(
    checked: _Checked,
) -> None:
    checked.refused["app-west"] = ApiAuthError("login refused for appid app-west: key-west bad")
    settings = Settings(sources=[account("east"), account("west")])  # type: ignore[arg-type]

    code, lines = await _run(settings)

    assert code == 1
    assert lines[:2] == [
        f"ok   vendor API login (east): logged in to {URL} as appid app-east",
        "FAIL vendor API login (west): login refused for appid app-west: *** bad",
    ]
    assert [line[:5] for line in lines[2:]] == ["ok   ", "ok   "]
    assert checked.closed == 2


async def test_a_failing_check_does_not_stop_the_ones_after_it(checked: _Checked) -> None:
    checked.kafka_error = KafkaTransientError("cannot reach Kafka at kafka-1:9092: no route")

    code, lines = await _run(make_settings())

    assert code == 1
    assert [line.split(":")[0] for line in lines] == [
        "ok   vendor API login",
        "FAIL Kafka and topics",
        "ok   Avro encoder",
    ]
    assert lines[1] == "FAIL Kafka and topics: cannot reach Kafka at kafka-1:9092: no route"


def test_kafka_names_the_topics_it_will_create_and_waits_at_most_ten_seconds(
    checked: _Checked,
) -> None:
    checked.missing = ["cdr.dlq", "cdr.state"]
    settings = make_settings(kafka={"create_topics": True, "bootstrap_servers": "kafka-1:9092"})

    assert check_kafka(settings) == (
        "reached kafka-1:9092, topics cdr, cdr.dlq, cdr.state; cdr.dlq, cdr.state will be created"
    )
    checked.missing = []
    check_kafka(make_settings(kafka={"operation_timeout_seconds": 4.0}))
    check_kafka(make_settings(kafka={"operation_timeout_seconds": 30.0}))
    assert checked.survey_timeouts == [10.0, 4.0, 10.0]


def test_kafka_fails_when_a_topic_is_missing_and_may_not_be_created(checked: _Checked) -> None:
    checked.missing = ["cdr"]

    with pytest.raises(TopicMissingError, match=r"^topic\(s\) cdr do not exist"):
        check_kafka(make_settings(kafka={"create_topics": False}))
