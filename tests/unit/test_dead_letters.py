"""Dead letters as built from a batch's failures: the value, the key, every header, the cut of a
bill too large to keep whole, and a bill without an id dead-lettered once."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cdr_connector.checkpoint import bill_fingerprint
from cdr_connector.dead_letters import DeadLetterBatch, DeadLetters, Failure
from cdr_connector.errors import RecordError
from cdr_connector.redaction import Redactor
from tests.fakes import FETCHED_AT_MS, batch, bill, make_settings

LIMIT = 1024  # the smallest kafka.max_value_bytes allowed
DIALLED_MS = int(datetime(2026, 11, 26, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)


def build(*failures: Failure, known: tuple[str, ...] = (), mode: Any = "sweep") -> DeadLetterBatch:
    settings = make_settings(kafka={"dead_letter_topic": "dlq", "max_value_bytes": LIMIT})
    letters = DeadLetters(settings, Redactor("s3cret"))
    return letters.build(list(failures), batch(mode=mode), known)


def headers(built: DeadLetterBatch, index: int = 0) -> dict[str, Any]:
    return dict(built.messages[index].headers)


def test_a_dead_letter_keeps_the_bill_and_says_why_in_its_headers() -> None:
    bad = bill(7, billsec="x")
    error = RecordError(
        "billsec is not a number: 'x' (token s3cret)", stage="normalise", field="billsec"
    )
    built = build((bad, 7, error))
    (message,) = built.messages
    assert (message.topic, message.key, message.timestamp_ms) == ("dlq", b"7", FETCHED_AT_MS)
    assert orjson.loads(message.value) == bad
    assert message.headers == [
        ("cdr.error", b"billsec is not a number: 'x' (token ***)"),
        ("cdr.stage", b"normalise"),
        ("cdr.source", b"unit"),
        ("cdr.fetch_mode", b"sweep"),
        ("cdr.fetched_at", str(FETCHED_AT_MS).encode()),
        ("cdr.field", b"billsec"),
        ("cdr.id", b"7"),
    ]
    assert (built.stages, built.start_ms, built.fingerprints, built.repeated) == (
        ["normalise"],
        [DIALLED_MS],
        [],
        0,
    )


def test_a_bill_without_an_id_has_no_key_no_id_header_and_is_remembered() -> None:
    bad = bill(0, id=None)
    built = build((bad, None, RecordError("no id", stage="normalise")))
    (message,) = built.messages
    assert message.key is None
    assert "cdr.id" not in headers(built) and "cdr.field" not in headers(built)
    assert built.fingerprints == [bill_fingerprint(bad)]


def test_a_bill_without_an_id_is_dead_lettered_once() -> None:
    first, second = bill(0, id=None), bill(0, id=None, extnumber="8002")
    error = RecordError("no id", stage="normalise")
    built = build((first, None, error), (second, None, error), (first, None, error))
    assert [orjson.loads(m.value) for m in built.messages] == [first, second]
    assert built.repeated == 1
    again = build((first, None, error), (second, None, error), known=(bill_fingerprint(first),))
    assert [orjson.loads(m.value) for m in again.messages] == [second]
    assert (again.repeated, again.fingerprints) == (1, [bill_fingerprint(second)])


def test_bills_with_the_same_id_are_each_dead_lettered() -> None:
    error = RecordError("bad", stage="encode")
    built = build((bill(5), 5, error), (bill(5), 5, error))
    assert len(built.messages) == 2 and built.repeated == 0


def test_a_dial_time_that_cannot_be_read_is_counted_in_no_hour() -> None:
    built = build((bill(3, starttime="yesterday"), 3, RecordError("bad", stage="normalise")))
    assert len(built.messages) == 1
    assert built.start_ms == []


def test_a_long_reason_is_cut_to_a_thousand_characters() -> None:
    built = build((bill(1), 1, RecordError("x" * 5000, stage="encode")))
    reason = headers(built)["cdr.error"]
    assert len(reason) == 1000 and reason.startswith(b"xxx")


def test_a_bill_of_exactly_the_limit_is_kept_whole() -> None:
    padded = bill(1)
    padded["userkey"] = ""
    padded["userkey"] = "u" * (LIMIT - len(orjson.dumps(padded)))
    assert len(orjson.dumps(padded)) == LIMIT
    built = build((padded, 1, RecordError("bad", stage="encode")))
    assert orjson.loads(built.messages[0].value) == padded
    assert "cdr.truncated" not in headers(built)


def test_a_bill_over_the_limit_is_cut_to_a_quarter_and_says_how_large_it_was() -> None:
    large = bill(1, userkey="u" * (2 * LIMIT))
    size = len(orjson.dumps(large))
    built = build((large, 1, RecordError("too large", stage="encode")))
    assert headers(built)["cdr.truncated"] == str(size).encode()
    value = orjson.loads(built.messages[0].value)
    assert value == {"truncated_bill": orjson.dumps(large)[: LIMIT // 4].decode(), "bytes": size}
