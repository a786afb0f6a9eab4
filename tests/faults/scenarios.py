"""Shared parts of the fault-injection suite: live traffic against the real simulator and the
real broker, then a read-back of everything committed and a comparison with everything the
simulator made visible.

Where each record belongs is `expected_destinations` (below, by POISON_RULES): the data
topic, the dead-letter topic under its id (`cdr.id`), or the dead-letter topic without a usable
id, where a test knows it by the original id its value carries (`bad_id_of`).

Verdict of a scenario (`tally`), over data records, dead letters with an id and dead letters
without one alike:
- lost: a record the simulator made visible that is not where it belongs;
- duplicated: every copy of an id beyond the first, over both topics;
- misplaced: an id where it does not belong (a good record dead-lettered, a poison record
  published, a bill without a usable id dead-lettered under some id, an id nobody made), and
  every dead letter without `cdr.id` that carries no original id either;
- out of order: a live record whose id is lower than the previous live record of the same key
  in the same partition. Records a sweep (or the audit, or a backfill) recovered are published
  when they are found, after newer records of their extension; their `fetch_mode` says so and
  they are left out of the order check (see docs/fault-injection.md).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from confluent_kafka import Message

from cdr_connector.simulator import FaultConfig, RunningSimulator, SimulatorConfig
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    connector_env,
    decode_single_object,
    free_port,
    header,
    load_schema,
    simulator_records,
)
from tests.kafka_helpers import consume_all

# The long variants (more kills, longer traffic) run only with CDR_FAULTS_LONG=1.
LONG = os.environ.get("CDR_FAULTS_LONG", "").strip() == "1"

APPID = "fault-appid"
ACCESSKEY = "fault-accesskey-7c1e-s3cr3t"
ZONE = "Asia/Shanghai"
# Every record's dial time must lie well inside the connector's lookback and sweep window
# (24 h and 6 h by default), or syncflag=1 and the sweeps would not see it by design.
BACKLOG_SPAN = 1800.0
# Fetch modes whose records are published when they are found, not in id order.
RECOVERY_MODES = frozenset({"sweep", "audit", "backfill"})
# After the last record arrived: long enough for one more sweep (every 3 s in the harness) to
# run, so a duplicate it published would be counted.
QUIET_SECONDS = 4.5
NO_FAULTS: dict[str, Any] = dict.fromkeys(
    (
        "latency_ms",
        "jitter_ms",
        "http_5xx_rate",
        "ret_500_rate",
        "bad_json_rate",
        "drop_rate",
        "slow_rate",
        "competitor_interval",
        "poison_rate",
    ),
    0.0,
) | {"racing": False}


def simulator_config(
    *,
    seed: int,
    backlog: int,
    rate: float,
    faults: FaultConfig | None = None,
    backlog_span: float = BACKLOG_SPAN,
    **extra: Any,
) -> SimulatorConfig:
    return SimulatorConfig(
        appid=APPID,
        accesskey=ACCESSKEY,
        seed=seed,
        backlog=backlog,
        rate=rate,
        timezone=ZONE,
        backlog_span=backlog_span,
        faults=faults or FaultConfig(),
        **extra,
    )


@dataclass(frozen=True)
class Scene:
    """One scenario's simulator, topics and log directory; its connectors share the source."""

    bootstrap: str
    sim: RunningSimulator
    topics: Topics
    log_dir: Path
    source: str = "faults"

    def connector(self, name: str, **settings: str) -> ConnectorProcess:
        """A connector process with the harness's settings, this suite's credentials and
        `settings` (CDR_ variables) on top."""
        values = {
            "CDR_SOURCE__APPID": APPID,
            "CDR_SOURCE__ACCESSKEY": ACCESSKEY,
            "CDR_POLL__PAGE_SIZE": "100",
            "CDR_POLL__CONCURRENCY": "4",
            **settings,
        }
        env = connector_env(
            self.bootstrap,
            self.sim.url,
            self.topics,
            source=self.source,
            http_port=free_port(),
            **values,
        )
        return ConnectorProcess(env, self.log_dir / f"{name}.log")

    async def clear_faults(self) -> None:
        await admin_post(self.sim.admin_url, "faults", NO_FAULTS)

    async def pause(self) -> None:
        await admin_post(self.sim.admin_url, "pause", {})


async def probe(connector: ConnectorProcess, path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of one of the connector's endpoints (`livez`, `readyz`)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{connector.http_port}/{path}") as response,
    ):
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


@dataclass
class Outcome:
    """One row of the summary table."""

    scenario: str
    made: int = 0
    committed: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    misplaced: int = 0
    recovered: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    note: str = ""
    examples: dict[str, list[int]] = field(default_factory=dict)

    def assert_clean(self) -> None:
        problems = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "out of order": self.out_of_order,
            "misplaced": self.misplaced,
        }
        bad = {name: count for name, count in problems.items() if count}
        assert not bad, f"{self.scenario}: {bad}; examples {self.examples}"


@dataclass
class ReadBack:
    data: list[Message]
    dead: list[Message]


async def read_back(bootstrap: str, topics: Topics) -> ReadBack:
    """Both topics as a read_committed consumer sees them now."""
    data, dead = await asyncio.gather(
        asyncio.to_thread(consume_all, bootstrap, topics.data),
        asyncio.to_thread(consume_all, bootstrap, topics.dead_letter),
    )
    return ReadBack(data, dead)


def header_id(message: Message) -> int | None:
    """The message's `cdr.id` header as an id, None when it has none. A header that is not 1-19
    ASCII digits fails the test: `int()` alone would read " 7", "7_0" or Arabic-Indic digits."""
    text = header(message, "cdr.id")
    if text is None:
        return None
    assert 0 < len(text) <= 19 and text.isascii() and text.isdigit(), (
        f"cdr.id {text[:40]!r} at offset {message.offset()} is not an id"
    )
    return int(text)


def message_id(message: Message) -> int:
    """A record's id: its `cdr.id` header, which every message of the data topic carries."""
    record_id = header_id(message)
    assert record_id is not None, f"a record without cdr.id at offset {message.offset()}"
    return record_id


def bill_id_of(bill: dict[str, Any]) -> int:
    """The id of a bill served with a usable one (well-formed or injected); any listed record's
    is `original_id`."""
    return int(bill["id"])


@dataclass(frozen=True)
class Found:
    """Where a read_committed reader finds each id, and how often: the counterpart of
    `Destinations`. A dead letter without `cdr.id` counts under the original id its value
    carries (`bad_id_of`); one that carries none is `unidentified` (its offset)."""

    data: Counter[int]
    dead: Counter[int]
    dead_without_id: Counter[int]
    unidentified: list[int]

    @classmethod
    def of(cls, back: ReadBack) -> Found:
        found = cls(Counter(message_id(m) for m in back.data), Counter(), Counter(), [])
        for message in back.dead:
            record_id = header_id(message)
            if record_id is not None:
                found.dead[record_id] += 1
                continue
            original = bad_id_of(bytes(message.value() or b""))
            if original is None:
                found.unidentified.append(message.offset() or 0)
            else:
                found.dead_without_id[original] += 1
        return found

    def every(self) -> Counter[int]:
        """Copies of each id over both topics, with or without `cdr.id`."""
        return self.data + self.dead + self.dead_without_id

    def missing(self, expected: Destinations) -> list[int]:
        """Expected ids that are not where they belong."""
        return sorted(
            (expected.data - self.data.keys())
            | (expected.dead.keys() - self.dead.keys())
            | (expected.dead_without_id - self.dead_without_id.keys())
        )

    def misplaced(self, expected: Destinations) -> list[int]:
        """Ids found where they do not belong (a good record dead-lettered, a poison record
        published, a bad-id bill dead-lettered under an id, an id nobody made)."""
        return sorted(
            (self.data.keys() - expected.data)
            | (self.dead.keys() - expected.dead.keys())
            | (self.dead_without_id.keys() - expected.dead_without_id)
        )


async def wait_until_complete(
    bootstrap: str, topics: Topics, expected: Destinations, *, timeout: float = 150.0
) -> ReadBack:
    """Poll both topics until every expected id is where it belongs or `timeout` passes; then
    wait QUIET_SECONDS more so that a late duplicate is seen. Never raises on a shortfall:
    `tally` counts it."""
    deadline = time.monotonic() + timeout
    while True:
        back = await read_back(bootstrap, topics)
        if not Found.of(back).missing(expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(QUIET_SECONDS)
    return await read_back(bootstrap, topics)


def tally(
    scenario: str,
    records: list[dict[str, Any]],
    back: ReadBack,
    *,
    expected: Destinations | None = None,
    seconds: float = 0.0,
    note: str = "",
) -> Outcome:
    """Compare what the simulator made visible (`records`, from `/admin/records`, sorted by
    `expected_destinations` unless `expected` is given) with what a read_committed reader
    sees."""
    wanted = expected or expected_destinations(records)
    found = Found.of(back)
    lost = found.missing(wanted)
    every = found.every()
    duplicated = sorted(i for i, c in every.items() if c > 1)
    misplaced = found.misplaced(wanted)
    out_of_order, recovered = _order(back.data)
    return Outcome(
        scenario=scenario,
        made=len(wanted.data | wanted.dead.keys() | wanted.dead_without_id),
        committed=len(back.data) + len(back.dead),
        lost=len(lost),
        duplicated=sum(every[i] - 1 for i in duplicated),
        out_of_order=len(out_of_order),
        misplaced=len(misplaced) + len(found.unidentified),
        recovered=recovered,
        dead_letters=len(back.dead),
        seconds=seconds,
        note=note,
        examples={
            name: ids[:5]
            for name, ids in (
                ("lost", lost),
                ("duplicated", duplicated),
                ("misplaced", misplaced),
                ("dead letters without any id (offsets)", found.unidentified),
                ("out_of_order", out_of_order),
            )
            if ids
        },
    )


def fetch_modes(messages: list[Message]) -> Counter[str]:
    schema = load_schema()
    return Counter(decode_single_object(m.value(), schema)["fetch_mode"] for m in messages)


def _order(messages: list[Message]) -> tuple[list[int], int]:
    """Ids of live records that came after a higher live id of the same key and partition, and
    how many records a recovery (sweep, audit, backfill) published."""
    schema = load_schema()
    last: dict[tuple[int, bytes], int] = {}
    out_of_order: list[int] = []
    recovered = 0
    for message in messages:  # partition by partition, in offset order
        record = decode_single_object(message.value(), schema)
        assert record["id"] == message_id(message), "cdr.id header differs from the record"
        if record["fetch_mode"] in RECOVERY_MODES:
            recovered += 1
            continue
        key = (message.partition(), message.key() or b"")
        if record["id"] < last.get(key, -1):
            out_of_order.append(record["id"])
        last[key] = max(record["id"], last.get(key, -1))
    return out_of_order, recovered


async def finish(
    scene: Scene,
    connector: ConnectorProcess,
    scenario: str,
    started: float,
    *,
    injected_dead: Mapping[int, str | None] | None = None,
    note: str = "",
    timeout: float = 150.0,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Outcome, list[dict[str, Any]]]:
    """Stop the faults and the traffic, let the connector catch up (sweeps recover what the
    faults took), stop it with SIGTERM (exit 0) and tally the topics against every record the
    simulator made visible, sorted by `expected_destinations`. `injected_dead`: injected bills
    that must be dead-lettered with their id (id -> `cdr.field`). `before_stop` runs once the
    topics are complete (or the timeout passed), while the connector still runs. Returns the
    outcome and the records (`/admin/records`)."""
    await scene.clear_faults()
    await scene.pause()
    records = await simulator_records(scene.sim.admin_url)
    expected = expected_destinations(records).with_dead(injected_dead or {})
    await wait_until_complete(scene.bootstrap, scene.topics, expected, timeout=timeout)
    if before_stop is not None:
        await before_stop()
    code = await connector.stop()
    assert code == 0, f"SIGTERM ended the connector with {code}:\n{connector.output()[-3000:]}"
    back = await read_back(scene.bootstrap, scene.topics)
    outcome = tally(
        scenario,
        records,
        back,
        expected=expected,
        seconds=time.monotonic() - started,
        note=note,
    )
    return outcome, records


# --- poison ---------------------------------------------------------------------------------

# Where a correct connector puts each of the simulator's poison kinds (cdr_connector/simulator/
# poison.py, by name; `/admin/records` names each record's kind in `poison`). The rules
# (cdr_connector/bill.py): an id is usable only if it is a JSON integer or a string of 1-19
# ASCII digits with a value in 1..2**63-1; a bill without a usable id is dead-lettered without
# a `cdr.id` header, and a test finds it by `memberid` = `poison-id-<id>` in its value; a bill
# that is not JSON is dead-lettered with its id, its raw bytes as the value; a field's text is
# at most 16 KiB.
DATA = "data"  # published as a normal record
DEAD = "dead"  # dead-lettered with its id as `cdr.id`, naming `field` (None: raw bytes)
DEAD_WITHOUT_ID = "dead_without_id"  # dead-lettered without `cdr.id`
BAD_ID_MARK = b"poison-id-"


@dataclass(frozen=True)
class PoisonRule:
    """What a correct connector does with one kind of poison, and why."""

    destination: str  # DATA, DEAD or DEAD_WITHOUT_ID
    field: str | None  # the field a DEAD letter names (`cdr.field`); None for raw bytes
    why: str


def _dead(field: str | None, why: str) -> PoisonRule:
    return PoisonRule(DEAD, field, why)


def _no_id(why: str) -> PoisonRule:
    return PoisonRule(DEAD_WITHOUT_ID, None, why)


POISON_RULES: dict[str, PoisonRule] = {
    "id_as_string": PoisonRule(DATA, None, "a string of ASCII digits is a usable id"),
    "impossible_starttime": _dead("starttime", "30 February, hour 25: no such time"),
    "missing_starttime": _dead("starttime", "the dial time is required"),
    "other_time_format": _dead("endtime", "only yyyy-mm-dd hh:mm:ss in the PBX's zone"),
    "duration_not_a_number": _dead("duration", '"332s" is not an integer'),
    "negative_billsec": _dead("billsec", "a talk time below zero"),
    "answer_after_end": _dead("answertime", "answered after the call ended"),
    "null_endtime": _dead("endtime", "a record exists only once its call has ended"),
    "unknown_direction": PoisonRule(DATA, None, "an unknown code is kept as it is"),
    "extnumber_as_number": PoisonRule(DATA, None, "a number where text is expected is its text"),
    "unknown_callmethod": PoisonRule(DATA, None, "an unknown code is kept as it is"),
    "hangupcause_as_text": _dead("hangupcause", "a code must be an integer"),
    "nested_userkey": _dead("userkey", "an object where text is expected"),
    "id_twenty_digits": _no_id("past 2**63-1"),
    "id_four_hundred_digits": _no_id("400 digits: past 2**63-1, and costly to convert"),
    "id_negative": _no_id("ids start at 1"),
    "id_decimal_text": _no_id('"12.5" is not an integer'),
    "id_null": _no_id("no id at all"),
    "id_lookalike_digits": _no_id(
        "Arabic-Indic digits are not ASCII: int() would read the id of the bill before, a "
        "genuine one, which must still be published"
    ),
    "id_float": _no_id("a JSON float, even 123.0, is not an integer"),
    "id_in_a_list": _no_id("a list is not an id"),
    "raw_lone_surrogate": _dead(None, "a \\udc80 escape: the page is not valid JSON"),
    "raw_invalid_utf8": _dead(None, "a 0xff byte: the page is not UTF-8"),
    "raw_nan_duration": _dead(None, "NaN is not JSON"),
    "raw_deep_userkey": _dead(None, "1,100 nested arrays: past any parser's depth limit"),
    "inflated_totalitems": PoisonRule(
        DATA, None, "the bill is sound; its page's totalitems (10**12) must not drive paging"
    ),
    "far_future_endtime": _dead("endtime", "a call ending in 2099 has not ended"),
    "huge": _dead("padding", "an unknown field of 300,000 characters, past 16 KiB"),
}
DEAD_LETTER_FIELDS = {
    kind: rule.field for kind, rule in POISON_RULES.items() if rule.destination == DEAD
}
# The kinds the normaliser accepts by contract (records.py): integers as decimal strings,
# numbers where text is expected, code values it does not know (kept as they are), and a
# sound bill on an implausible page.
ACCEPTED_KINDS = frozenset(kind for kind, rule in POISON_RULES.items() if rule.destination == DATA)
_FAR_FUTURE = "2099-12-31 23:59:59"


def poison_kind(bill: dict[str, Any]) -> str | None:
    """Which malformation the simulator applied to a listed bill: the kind `/admin/records`
    names (None for a well-formed or an injected bill), or else the kind told from the bill
    alone. Content tells every kind but the raw-bytes ones and `inflated_totalitems`, which
    the listing shows sound."""
    if "poison" in bill:
        explicit: str | None = bill["poison"]
        return explicit
    bad_id = _bad_id_kind(bill)
    if bad_id is not None:
        return bad_id
    checks: tuple[tuple[str, bool], ...] = (
        ("huge", "padding" in bill),
        ("id_as_string", isinstance(bill.get("id"), str)),
        ("missing_starttime", "starttime" not in bill),
        ("impossible_starttime", bill.get("starttime") == "2023-02-30 25:61:61"),
        ("null_endtime", "endtime" in bill and bill["endtime"] is None),
        ("far_future_endtime", bill.get("endtime") == _FAR_FUTURE),
        ("other_time_format", "T" in str(bill.get("endtime"))),
        ("duration_not_a_number", isinstance(bill.get("duration"), str)),
        ("negative_billsec", bill.get("billsec") == -5),
        ("answer_after_end", bill.get("answertime") == _FAR_FUTURE),
        ("unknown_direction", bill.get("direction") not in ("callin", "callout")),
        ("extnumber_as_number", isinstance(bill.get("extnumber"), int)),
        ("unknown_callmethod", bill.get("callmethod") not in range(7)),
        ("hangupcause_as_text", isinstance(bill.get("hangupcause"), str)),
        ("nested_userkey", isinstance(bill.get("userkey"), dict)),
    )
    return next((kind for kind, matches in checks if matches), None)


def _bad_id_kind(bill: dict[str, Any]) -> str | None:
    """The bad-id kind, told by the `poison-id-<id>` memberid and the served id."""
    memberid = bill.get("memberid")
    if not (isinstance(memberid, str) and memberid.startswith(BAD_ID_MARK.decode())):
        return None
    served = bill.get("id")
    by_value: tuple[tuple[str, bool], ...] = (
        ("id_null", served is None),
        ("id_in_a_list", isinstance(served, list)),
        ("id_float", isinstance(served, float)),
        ("id_negative", isinstance(served, int) and served < 0),
        ("id_decimal_text", served == "12.5"),
        ("id_twenty_digits", served == "9" * 20),
        ("id_four_hundred_digits", served == "9" * 400),
        ("id_lookalike_digits", isinstance(served, str) and not served.isascii()),
    )
    return next((kind for kind, matches in by_value if matches), None)


def original_id(bill: dict[str, Any]) -> int:
    """The id a listed record was made with: its `poison_id` when the simulator poisoned it
    (its served `id` may be destroyed), else its `id`."""
    made = bill.get("poison_id")
    return int(made) if made is not None else bill_id_of(bill)


@dataclass(frozen=True)
class Destinations:
    """Where every listed record must end (see POISON_RULES)."""

    data: set[int]  # ids expected in the data topic, once each
    dead: dict[int, str | None]  # ids expected as dead letters with `cdr.id` -> `cdr.field`
    dead_without_id: set[int]  # original ids of dead letters without a usable id

    def with_dead(self, ids: Mapping[int, str | None]) -> Destinations:
        """These ids (injected bills a test knows to be bad) moved from the data topic to the
        dead letters with an id, naming the field given."""
        return Destinations(self.data - ids.keys(), {**self.dead, **ids}, set(self.dead_without_id))


def expected_destinations(records: Iterable[dict[str, Any]]) -> Destinations:
    """Sort `/admin/records` (as `simulator_records` returns them) by POISON_RULES. Injected
    bills count as data: the test that injected them knows better and moves them itself."""
    destinations = Destinations(set(), {}, set())
    for record in records:
        kind = poison_kind(record)
        rule = POISON_RULES[kind] if kind is not None else None
        made = original_id(record)
        if rule is None or rule.destination == DATA:
            destinations.data.add(made)
        elif rule.destination == DEAD:
            destinations.dead[made] = rule.field
        else:
            destinations.dead_without_id.add(made)
    return destinations


def dead_letter_ids(bills: list[dict[str, Any]]) -> dict[int, str | None]:
    """Generated poison that must end in the dead-letter topic with its id: id -> the field to
    name (None for raw bytes). Bad-id poison is in `expected_destinations(...).dead_without_id`."""
    return expected_destinations(bills).dead


def check_dead_letter(message: Message, expected: Destinations, source: str) -> None:
    """The headers and value a dead letter must have for the rule its bill broke."""
    value = bytes(message.value() or b"")
    error = header(message, "cdr.error") or ""
    field = header(message, "cdr.field")
    assert header(message, "cdr.source") == source
    record_id = header_id(message)
    if record_id is None:  # no usable id: known by the id its memberid carries
        assert bad_id_of(value) in expected.dead_without_id, value[:200]
        assert (header(message, "cdr.stage"), field) == ("normalise", "id"), error
        assert "id" in error
        assert value.startswith(b"{")
        return
    wanted = expected.dead[record_id]
    if wanted is None:  # not JSON: the bill's raw bytes as the vendor sent them
        assert header(message, "cdr.stage") == "parse", (record_id, error)
        assert field in (None, "id"), (record_id, field)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(value)
        assert str(record_id).encode() in value[:40]
        return
    assert header(message, "cdr.stage") == "normalise", (record_id, error)
    assert field == wanted, (record_id, error)
    assert wanted in error
    assert value.startswith(b"{")


def bad_id_of(value: bytes) -> int | None:
    """The original id a dead letter without a usable id carries, from `poison-id-<id>` in its
    value (its `memberid`); None if it carries none."""
    start = value.find(BAD_ID_MARK)
    if start < 0:
        return None
    digits = value[start + len(BAD_ID_MARK) :]
    end = 0
    while end < len(digits) and digits[end : end + 1].isdigit():
        end += 1
    return int(digits[:end]) if end else None
