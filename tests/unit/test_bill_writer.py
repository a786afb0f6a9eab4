"""The one-pass writer against its definition: `records.normalise` + the Avro encoder.

Every bill either comes out of `BillWriter.write_common` with exactly the bytes, key and facts
of the general path, or is left to the general path (None); `BillWriter.write` then judges it
exactly as `normalise` does.

Each test runs twice: on the module as imported (the mypyc build where setup.py could compile
it) and on the same file executed as Python source.
"""

from __future__ import annotations

import random
import zoneinfo
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pytest

from cdr_connector import bill_writer
from cdr_connector.avro import ConfluentEncoder, RecordEncoder, SingleObjectEncoder
from cdr_connector.bill_writer import EncodedRecord
from cdr_connector.errors import RecordError
from cdr_connector.records import RecordContext, normalise, record_key
from cdr_connector.simulator import generator
from cdr_connector.simulator.localtime import LocalTime
from cdr_connector.simulator.store import RecordStore
from tests.unit import builds
from tests.unit.test_records import NEW_YORK, SHANGHAI, answered, context, example_bill

T0 = 1_730_000_000.0
FALLBACKS = ("displaynumber", "destnumber", "userid", "id")
BUILDS = builds.both(bill_writer)


@pytest.fixture(params=list(BUILDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return BUILDS[request.param]


def simulator_bills(count: int, poison_rate: float, zone: str = "Asia/Shanghai") -> list[Any]:
    """Bills as the simulator serves them: the vendor's field mix, and poison when asked."""
    pools = generator.Pools.build(7)
    store = RecordStore(pools, LocalTime(zoneinfo.ZoneInfo(zone)), "10.0.0.1")
    store.extend(
        list(generator.backlog(pools, 7, count, end=T0, span=6 * 3600, poison_rate=poison_rate))
    )
    return store.render(range(len(store)))


def general(bill: Any, ctx: RecordContext, encoder: RecordEncoder, fallback: str) -> EncodedRecord:
    record = normalise(bill, ctx)
    return EncodedRecord(
        id=record["id"],
        key=record_key(record, fallback),
        value=encoder.encode(record),
        starttime=record["starttime"],
        endtime=record["endtime"],
        answered=record["answertime"] is not None,
        direction=record["direction"],
        callmethod=record["callmethod"],
        billsec=record["billsec"],
        unknown_fields=len(record["extra_fields"]),
    )


def outcome(call: Any) -> EncodedRecord | str:
    try:
        result: EncodedRecord = call()
    except RecordError as exc:
        return f"{exc.stage}/{exc.field}: {exc}"
    return result


def confluent_encoder() -> ConfluentEncoder:
    return ConfluentEncoder.create("mock://bill-writer", {}, "cdr")


# --- the usual bills ------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_simulator_bills_take_the_one_pass_path_with_identical_bytes(
    impl: ModuleType, fallback: str
) -> None:
    ctx = context()
    encoder = SingleObjectEncoder()
    bills = simulator_bills(3000, poison_rate=0.0)
    for bill in bills:  # the first bill of an hour teaches normalise that hour's offset
        normalise(bill, ctx)
    writer = impl.BillWriter(encoder, ctx, fallback)
    taken = 0
    for bill in bills:
        fast = writer.write_common(bill)
        if fast is not None:
            taken += 1
            assert fast == general(bill, ctx, encoder, fallback), bill
    assert taken == len(bills), "every well-formed simulator bill is of the usual shape"
    assert any(not bill["extnumber"] for bill in bills), "calls without extension are covered"
    assert any(bill["answertime"] is None for bill in bills)


def test_confluent_framing_and_every_fetch_mode_give_identical_bytes(impl: ModuleType) -> None:
    bills = simulator_bills(300, poison_rate=0.0)
    for encoder in (SingleObjectEncoder(), confluent_encoder()):
        for mode in ("live", "sweep", "audit", "backfill"):
            ctx = context(mode=mode)
            for bill in bills:
                normalise(bill, ctx)
            writer = impl.BillWriter(encoder, ctx)
            for bill in bills:
                assert writer.write_common(bill) == general(bill, ctx, encoder, "displaynumber")


def test_written_values_read_back_as_the_normalised_record(impl: ModuleType) -> None:
    from cdr_connector.avro import decode

    ctx = context()
    bill = answered()
    normalise(bill, ctx)
    fast = impl.BillWriter(SingleObjectEncoder(), ctx).write_common(bill)
    assert fast is not None
    assert decode(fast.value) == normalise(bill, ctx)


# --- poison and odd shapes: the same verdict as normalise ---------------------------------


def test_poisoned_simulator_bills_get_the_general_paths_verdict(impl: ModuleType) -> None:
    ctx = context()
    encoder = SingleObjectEncoder()
    bills = simulator_bills(3000, poison_rate=0.2)
    for bill in bills:
        outcome(lambda bill=bill: normalise(bill, ctx))
    writer = impl.BillWriter(encoder, ctx)
    left_to_general = 0
    for bill in bills:
        fast = writer.write_common(bill)
        expected = outcome(lambda bill=bill: general(bill, ctx, encoder, "displaynumber"))
        if fast is None:
            left_to_general += 1
        else:
            assert fast == expected, bill
        assert outcome(lambda bill=bill: writer.write(bill)) == expected, bill
    assert left_to_general > 100, "poisoned bills are left to the general path"


ODD_BILLS: dict[str, dict[str, Any]] = {
    "id as a digit string": {"id": "22670"},
    "id as a negative string": {"id": "-5"},
    "id as a float": {"id": 22670.0},
    "id as a boolean": {"id": True},
    "id beyond a long": {"id": 2**63},
    "duration as a string": {"duration": "60"},
    "duration as a padded string": {"duration": " 60"},
    "duration beyond an int": {"duration": 2**31, "billsec": 0},
    "negative billsec": {"billsec": -1},
    "billsec past duration": {"billsec": 30},
    "billsec one past duration": {"billsec": 29},
    "callmethod as a string": {"callmethod": "3"},
    "hangupcause beyond an int": {"hangupcause": 2**31},
    "extension as a number": {"extnumber": 8001},
    "extension as null": {"extnumber": None},
    "extension as a float": {"extnumber": 8001.0},
    "extension as a list": {"extnumber": ["8001"]},
    "destination as null": {"destnumber": None},
    "destination as a number": {"destnumber": 13387525701},
    "direction as a number": {"direction": 1},
    "userkey as a dict": {"userkey": {"k": 1}},
    "lone surrogate": {"userid": "\udcff"},
    "long text": {"recordfilename": "x" * 5000},
    "text of 63 bytes": {"memberid": "m" * 63},
    "text of 64 bytes": {"memberid": "m" * 64},
    "multi-byte text": {"userid": "王伟-客户"},
    "unknown field": {"newfield": {"a": 1}},
    "answer as zeros": {"answertime": "0000-00-00 00:00:00"},
    "answer as empty text": {"answertime": ""},
    "answer before start": {"answertime": "2019-09-27 14:58:30"},
    "answer after end": {"answertime": "2019-09-27 14:59:06"},
    "answer as a number": {"answertime": 0},
    "end before start": {"endtime": "2019-09-27 14:58:00"},
    "start in an unseen hour": {"starttime": "2019-09-27 13:59:59"},
    "start not a time": {"starttime": "2019-09-27T14:58:37"},
    "start missing": {"starttime": None},
    "impossible date": {"starttime": "2019-02-30 14:58:37"},
}


@pytest.mark.parametrize("changes", ODD_BILLS.values(), ids=list(ODD_BILLS))
def test_odd_bills_get_the_same_verdict_either_way(
    impl: ModuleType, changes: dict[str, Any]
) -> None:
    ctx = context()
    encoder = SingleObjectEncoder()
    normalise(example_bill(), ctx)  # the example's hour is known
    bill = example_bill()
    bill.update(changes)
    writer = impl.BillWriter(encoder, ctx)
    expected = outcome(lambda: general(bill, ctx, encoder, "displaynumber"))
    fast = writer.write_common(bill)
    assert fast is None or fast == expected
    assert outcome(lambda: writer.write(bill)) == expected


def test_a_missing_field_and_a_non_object_go_to_the_general_path(impl: ModuleType) -> None:
    ctx = context()
    writer = impl.BillWriter(SingleObjectEncoder(), ctx)
    normalise(example_bill(), ctx)
    for bill in ({k: v for k, v in example_bill().items() if k != "userid"}, [1], "bill", None):
        expected = outcome(lambda bill=bill: general(bill, ctx, writer._encoder, "displaynumber"))
        fast = writer.write_common(bill)
        assert fast is None or fast == expected
        assert outcome(lambda bill=bill: writer.write(bill)) == expected


def test_hours_with_a_change_of_offset_are_never_taken_by_the_one_pass_path(
    impl: ModuleType,
) -> None:
    """New York, the night clocks go back: the repeated hour needs normalise's fold rules."""
    ctx = context(NEW_YORK)
    encoder = SingleObjectEncoder()
    bill = answered(
        starttime="2023-11-05 01:30:00",
        answertime="2023-11-05 01:30:10",
        endtime="2023-11-05 01:31:00",
        duration=60,
        billsec=50,
    )
    normalise(bill, ctx)
    assert impl.BillWriter(encoder, ctx).write_common(bill) is None
    assert impl.BillWriter(encoder, ctx).write(bill) == general(bill, ctx, encoder, "displaynumber")


def test_bills_in_other_zones_take_their_own_offsets(impl: ModuleType) -> None:
    bills = simulator_bills(200, poison_rate=0.0, zone="America/New_York")
    ctx = context(NEW_YORK)
    encoder = SingleObjectEncoder()
    for bill in bills:
        normalise(bill, ctx)
    writer = impl.BillWriter(encoder, ctx)
    shanghai = impl.BillWriter(encoder, context(SHANGHAI))
    for bill in bills:
        assert writer.write(bill) == general(bill, ctx, encoder, "displaynumber")
        other = shanghai.write(bill)
        assert other.starttime != general(bill, ctx, encoder, "displaynumber").starttime


# --- the pieces -----------------------------------------------------------------------------


def test_zigzag_varint_matches_fastavro_for_ints_and_longs(impl: ModuleType) -> None:
    from io import BytesIO

    rng = random.Random(5)
    numbers = [0, 1, -1, 63, -64, 64, 8191, 8192, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
    numbers += [rng.randrange(-(2**63), 2**63) for _ in range(2000)]
    numbers += [rng.randrange(2**34, 2**42) for _ in range(2000)]  # epoch milliseconds
    numbers += [rng.randrange(0, 2**14) for _ in range(2000)]
    numbers += [rng.randrange(-(2**28), 2**28) for _ in range(2000)]  # ids, small negatives
    numbers += [2**13 - 1, 2**13, 2**20 - 1, 2**20, 2**27 - 1, 2**27, -(2**27) - 1]
    for number in numbers:
        buffer = BytesIO()
        fastavro.schemaless_writer(buffer, "long", number)
        assert impl.zigzag_varint(number) == buffer.getvalue(), number


def test_memos_stay_bounded_and_correct(impl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(impl, "_MAX_MEMO", 50)
    monkeypatch.setattr(impl, "_LONGS", {})
    monkeypatch.setattr(impl, "_COMMON_TEXTS", {})
    ctx = context()
    encoder = SingleObjectEncoder()
    bills = simulator_bills(400, poison_rate=0.0)
    for bill in bills:
        normalise(bill, ctx)
    writer = impl.BillWriter(encoder, ctx)
    for bill in bills:
        assert writer.write(bill) == general(bill, ctx, encoder, "displaynumber")
    assert len(impl._LONGS) <= 50
    assert len(impl._COMMON_TEXTS) <= 50
    # Remembered, not merely bounded: below the bound every number stays in the memo.
    monkeypatch.setattr(impl, "_LONGS", {})
    for number in range(10):
        assert impl._long(number) == impl.zigzag_varint(number)
    assert sorted(impl._LONGS) == list(range(10))


# --- the builds -----------------------------------------------------------------------------


def test_the_source_build_says_it_is_not_compiled() -> None:
    assert BUILDS["source"].is_compiled() is False
    assert bill_writer.is_compiled() is (Path(bill_writer.__file__).suffix == ".so")


def test_a_compiled_writer_is_built_from_the_current_source() -> None:
    builds.assert_built_from_current_source(bill_writer)
