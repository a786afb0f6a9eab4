"""Shared parts of the fault-injection suite: live traffic against the real simulator and the
real broker, then a read-back of everything committed and a comparison with everything the
simulator made visible.

Verdict of a scenario (`tally`):
- lost: a record the simulator made visible that is in neither topic where it belongs (data
  topic for well-formed records, dead-letter topic for poison);
- duplicated: every copy of an id beyond the first, over both topics;
- misplaced: an id in a topic where it does not belong (a good record dead-lettered, a poison
  record published, an id nobody made);
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    *, seed: int, backlog: int, rate: float, faults: FaultConfig | None = None, **extra: Any
) -> SimulatorConfig:
    return SimulatorConfig(
        appid=APPID,
        accesskey=ACCESSKEY,
        seed=seed,
        backlog=backlog,
        rate=rate,
        timezone=ZONE,
        backlog_span=BACKLOG_SPAN,
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


def message_id(message: Message) -> int:
    value = header(message, "cdr.id")
    assert value is not None, f"a message without cdr.id at offset {message.offset()}"
    return int(value)


def bill_id_of(bill: dict[str, Any]) -> int:
    return int(bill["id"])


async def wait_until_complete(
    bootstrap: str,
    topics: Topics,
    data_ids: set[int],
    dead_ids: Iterable[int] = (),
    *,
    timeout: float = 150.0,
) -> ReadBack:
    """Poll both topics until every expected id is in its topic or `timeout` passes; then wait
    QUIET_SECONDS more so that a late duplicate is seen. Never raises on a shortfall: `tally`
    counts it."""
    dead_wanted = set(dead_ids)
    deadline = time.monotonic() + timeout
    while True:
        back = await read_back(bootstrap, topics)
        complete = data_ids <= {message_id(m) for m in back.data} and dead_wanted <= {
            message_id(m) for m in back.dead
        }
        if complete or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(QUIET_SECONDS)
    return await read_back(bootstrap, topics)


def tally(
    scenario: str,
    bills: list[dict[str, Any]],
    back: ReadBack,
    *,
    dead_expected: set[int] | None = None,
    seconds: float = 0.0,
    note: str = "",
) -> Outcome:
    """Compare what the simulator made visible with what a read_committed reader sees."""
    made = {bill_id_of(b) for b in bills}
    dead_wanted = dead_expected or set()
    data_wanted = made - dead_wanted
    data_counts = Counter(message_id(m) for m in back.data)
    dead_counts = Counter(message_id(m) for m in back.dead)
    lost = sorted((data_wanted - data_counts.keys()) | (dead_wanted - dead_counts.keys()))
    every = data_counts + dead_counts
    duplicated = sorted(i for i, c in every.items() if c > 1)
    misplaced = sorted((data_counts.keys() - data_wanted) | (dead_counts.keys() - dead_wanted))
    out_of_order, recovered = _order(back.data)
    return Outcome(
        scenario=scenario,
        made=len(made),
        committed=len(back.data) + len(back.dead),
        lost=len(lost),
        duplicated=sum(every[i] - 1 for i in duplicated),
        out_of_order=len(out_of_order),
        misplaced=len(misplaced),
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
    dead_expected: set[int] | None = None,
    note: str = "",
    timeout: float = 150.0,
) -> tuple[Outcome, list[dict[str, Any]]]:
    """Stop the faults and the traffic, let the connector catch up (sweeps recover what the
    faults took), stop it with SIGTERM (exit 0) and tally the topics."""
    await scene.clear_faults()
    await scene.pause()
    bills = await simulator_records(scene.sim.admin_url)
    dead = dead_expected or set()
    data_ids = {bill_id_of(b) for b in bills} - dead
    back = await wait_until_complete(scene.bootstrap, scene.topics, data_ids, dead, timeout=timeout)
    code = await connector.stop()
    assert code == 0, f"SIGTERM ended the connector with {code}:\n{connector.output()[-3000:]}"
    back = await read_back(scene.bootstrap, scene.topics)
    outcome = tally(
        scenario,
        bills,
        back,
        dead_expected=dead,
        seconds=time.monotonic() - started,
        note=note,
    )
    return outcome, bills


# --- poison ---------------------------------------------------------------------------------

# The simulator's poison kinds (cdr_connector/simulator/poison.py) that a strict reader must
# dead-letter, with the field the dead letter must name.
DEAD_LETTER_FIELDS = {
    "impossible_starttime": "starttime",
    "missing_starttime": "starttime",
    "other_time_format": "endtime",
    "duration_not_a_number": "duration",
    "negative_billsec": "billsec",
    "answer_after_end": "answertime",
    "null_endtime": "endtime",
    "hangupcause_as_text": "hangupcause",
    "nested_userkey": "userkey",
}
# The kinds the normaliser accepts by contract (records.py): integers as decimal strings,
# numbers where text is expected, and code values it does not know (kept as they are).
ACCEPTED_KINDS = frozenset(
    {"id_as_string", "extnumber_as_number", "unknown_direction", "unknown_callmethod"}
)


def poison_kind(bill: dict[str, Any]) -> str | None:
    """Which malformation the simulator applied to a rendered bill, told from the bill alone;
    None for a well-formed one."""
    checks: tuple[tuple[str, bool], ...] = (
        ("id_as_string", isinstance(bill.get("id"), str)),
        ("missing_starttime", "starttime" not in bill),
        ("impossible_starttime", bill.get("starttime") == "2023-02-30 25:61:61"),
        ("null_endtime", "endtime" in bill and bill["endtime"] is None),
        ("other_time_format", "T" in str(bill.get("endtime"))),
        ("duration_not_a_number", isinstance(bill.get("duration"), str)),
        ("negative_billsec", bill.get("billsec") == -5),
        ("answer_after_end", bill.get("answertime") == "2099-12-31 23:59:59"),
        ("unknown_direction", bill.get("direction") not in ("callin", "callout")),
        ("extnumber_as_number", isinstance(bill.get("extnumber"), int)),
        ("unknown_callmethod", bill.get("callmethod") not in range(7)),
        ("hangupcause_as_text", isinstance(bill.get("hangupcause"), str)),
        ("nested_userkey", isinstance(bill.get("userkey"), dict)),
    )
    for kind, matches in checks:
        if matches:
            return kind
    return None


def dead_letter_ids(bills: list[dict[str, Any]]) -> dict[int, str]:
    """Generated poison that must end in the dead-letter topic: id -> the field to name."""
    found: dict[int, str] = {}
    for bill in bills:
        kind = poison_kind(bill)
        if kind is not None and kind not in ACCEPTED_KINDS:
            found[bill_id_of(bill)] = DEAD_LETTER_FIELDS[kind]
    return found
