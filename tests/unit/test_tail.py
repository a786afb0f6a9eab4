"""`tail` on a scripted consumer: what it prints, when it stops, and what it reads."""

from __future__ import annotations

import io
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from confluent_kafka import KafkaError as LibKafkaError

from cdr_connector import tail as tail_module
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.errors import KafkaTransientError
from cdr_connector.records import RecordContext, normalise
from cdr_connector.tail import tail
from tests.fakes import FETCHED_AT_MS, bill, make_settings


class _Message:
    def __init__(
        self,
        value: bytes = b"",
        error: LibKafkaError | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._value, self._error, self._headers = value, error, headers

    def value(self) -> bytes:
        return self._value

    def error(self) -> LibKafkaError | None:
        return self._error

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class _Consumer:
    """Answers `poll` from a script; past its end, nothing came (None), or it raises."""

    def __init__(self, script: list[_Message | None], then: BaseException | None = None) -> None:
        self.script = script
        self.then = then
        self.polls = 0
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = topics

    def poll(self, timeout: float) -> _Message | None:
        assert timeout == 0.5
        self.polls += 1
        if self.script:
            return self.script.pop(0)
        if self.then is not None:
            raise self.then
        return None

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `tail` asked `new_consumer` for; set "consumer" to the consumer it gets."""
    made: dict[str, Any] = {}

    def new_consumer(settings: object, purpose: str, config: dict[str, Any]) -> _Consumer:
        made["purpose"], made["config"] = purpose, config
        consumer: _Consumer = made["consumer"]
        return consumer

    monkeypatch.setattr(tail_module, "new_consumer", new_consumer)
    return made


class _Flushed(io.StringIO):
    """Keeps what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def _ticking_clock(monkeypatch: pytest.MonkeyPatch, step: int = 1) -> None:
    """`tail`'s monotonic clock reads 0, then `step` more at each reading."""
    ticks = itertools.count(step=step)
    monkeypatch.setattr(tail_module.time, "monotonic", lambda: float(next(ticks)))


def _value(record_id: int) -> bytes:
    context = RecordContext("unit", ZoneInfo("Asia/Shanghai"), FETCHED_AT_MS, "live")
    return SingleObjectEncoder().encode(normalise(bill(record_id), context))


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_records_are_printed_decoded_one_json_line_each_up_to_the_maximum(
    made: dict[str, Any],
) -> None:
    made["consumer"] = consumer = _Consumer([_Message(_value(i)) for i in (1, 2, 3)])
    out = _Flushed()

    assert tail(make_settings(), max_records=2, out=out) == 0

    assert [line["id"] for line in _lines(out)] == [1, 2]
    assert consumer.polls == 2
    assert made["config"]["auto.offset.reset"] == "latest"
    # Flushed at each line: a pipe into `jq` or `grep` sees a record as it arrives.
    assert [text.count("\n") for text in out.flushed] == [1, 2]
    assert consumer.subscribed == [make_settings().kafka.topic]
    assert consumer.closed


def test_without_a_maximum_it_prints_everything_and_stops_once_idle(
    made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _ticking_clock(monkeypatch)
    made["consumer"] = consumer = _Consumer([_Message(_value(i)) for i in (1, 2, 3)])
    out = io.StringIO()

    tail(make_settings(), idle_exit_seconds=2.5, out=out)

    assert [line["id"] for line in _lines(out)] == [1, 2, 3]
    # After the last record at tick 3: polls at ticks 4, 5 and 6 find nothing; 6 - 3 > 2.5.
    assert consumer.polls == 6


def test_a_topic_not_created_yet_is_waited_for_and_other_errors_end_it_with_the_topic(
    made: dict[str, Any],
) -> None:
    missing = _Message(error=LibKafkaError(LibKafkaError.UNKNOWN_TOPIC_OR_PART))
    made["consumer"] = _Consumer([missing, _Message(_value(7))])
    out = io.StringIO()
    tail(make_settings(), max_records=1, out=out)
    assert [line["id"] for line in _lines(out)] == [7]

    refused = _Message(error=LibKafkaError(LibKafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
    made["consumer"] = consumer = _Consumer([refused])
    with pytest.raises(KafkaTransientError, match=r"^reading cdr\.records: denied$"):
        tail(make_settings(kafka={"topic": "cdr.records"}), max_records=1, out=io.StringIO())
    assert consumer.closed


def test_dead_letters_are_printed_with_their_headers_as_text(made: dict[str, Any]) -> None:
    letter = _Message(b"{not avro\xff", headers=[("reason", b"duration: not a number")])
    made["consumer"] = consumer = _Consumer([letter, _Message(b"x", headers=None)])
    out = io.StringIO()

    tail(make_settings(), dead_letters=True, max_records=2, out=out)

    assert _lines(out) == [
        {"headers": {"reason": "duration: not a number"}, "value": "{not avro\ufffd"},
        {"headers": {}, "value": "x"},
    ]
    assert consumer.subscribed == [make_settings().kafka.dead_letter_topic]


def test_an_idle_exit_counts_from_the_start_when_nothing_ever_comes(
    made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _ticking_clock(monkeypatch)
    made["consumer"] = consumer = _Consumer([])
    out = io.StringIO()

    assert tail(make_settings(), idle_exit_seconds=2.5, out=out) == 0

    assert out.getvalue() == ""
    # Started at tick 0; the empty polls end at ticks 1, 2 and 3, and 3 - 0 > 2.5.
    assert consumer.polls == 3


def test_an_idle_exit_counts_from_the_last_record(
    made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _ticking_clock(monkeypatch)
    made["consumer"] = consumer = _Consumer([None, None, _Message(_value(4))])

    tail(make_settings(), idle_exit_seconds=2.5, out=io.StringIO())

    # Empty at ticks 1 and 2, the record at tick 3, then empty at 4, 5 and 6: 6 - 3 > 2.5.
    assert consumer.polls == 6


def test_without_an_idle_exit_empty_polls_do_not_end_it(
    made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An hour passes at every poll: no idle time is too long unless idle_exit_seconds says so.
    _ticking_clock(monkeypatch, step=3600)
    made["consumer"] = _Consumer([None, None, None, _Message(_value(9))])
    out = io.StringIO()

    tail(make_settings(), max_records=1, out=out)

    assert [line["id"] for line in _lines(out)] == [9]


def test_ctrl_c_ends_it_cleanly_with_the_consumer_closed(made: dict[str, Any]) -> None:
    made["consumer"] = consumer = _Consumer([], then=KeyboardInterrupt())

    assert tail(make_settings(), out=io.StringIO()) == 0
    assert consumer.closed


@pytest.mark.parametrize(("from_beginning", "reset"), [(True, "earliest"), (False, "latest")])
def test_it_reads_from_the_start_or_the_end_and_notices_a_new_topic_within_a_second(
    made: dict[str, Any], from_beginning: bool, reset: str
) -> None:
    made["consumer"] = _Consumer([_Message(_value(1))])

    tail(make_settings(), from_beginning=from_beginning, max_records=1, out=io.StringIO())

    assert made["purpose"].startswith("tail-")
    assert len(made["purpose"]) == len("tail-") + 8
    assert made["config"] == {
        "auto.offset.reset": reset,
        "enable.partition.eof": False,
        "topic.metadata.refresh.interval.ms": 1000,
    }
