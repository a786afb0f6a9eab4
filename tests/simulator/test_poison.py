"""Poison: every kind of hostile vendor data, drawn by `poison_rate` or asked for by name
through /admin/poison, checked over HTTP against the same call rendered without poison."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from cdr_connector.simulator import FaultConfig, ManualClock
from cdr_connector.simulator.poison import HUGE_BILL_BYTES, KIND_NAMES
from cdr_connector.simulator.render import BillRenderer
from tests.faults import scenarios
from tests.simulator.conftest import T0, Client, StartSimulator, as_served

Bill = dict[str, Any]
Change = Callable[[Bill], Bill]

# The kinds before the hostile-data ones, in SHAPE order: stored SHAPEs keep their meaning.
FIRST_KINDS = (
    "id_as_string",
    "impossible_starttime",
    "missing_starttime",
    "other_time_format",
    "duration_not_a_number",
    "negative_billsec",
    "answer_after_end",
    "null_endtime",
    "unknown_direction",
    "extnumber_as_number",
    "unknown_callmethod",
    "hangupcause_as_text",
    "nested_userkey",
)
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _set(**changes: Any) -> Change:
    return lambda bill: {**bill, **changes}


def _bad_id(new_id: Callable[[int], Any]) -> Change:
    def change(bill: Bill) -> Bill:
        return {**bill, "id": new_id(bill["id"]), "memberid": f"poison-id-{bill['id']}"}

    return change


# Each JSON kind as the bill it makes of the same call rendered without poison.
SERVED: dict[str, Change] = {
    "id_as_string": lambda bill: {**bill, "id": str(bill["id"])},
    "impossible_starttime": _set(starttime="2023-02-30 25:61:61"),
    "missing_starttime": lambda bill: {k: v for k, v in bill.items() if k != "starttime"},
    "other_time_format": lambda bill: {
        **bill,
        "endtime": bill["endtime"].replace("-", "/").replace(" ", "T") + "+08:00",
    },
    "duration_not_a_number": lambda bill: {**bill, "duration": f"{bill['duration']}s"},
    "negative_billsec": _set(billsec=-5),
    "answer_after_end": _set(answertime="2099-12-31 23:59:59"),
    "null_endtime": _set(endtime=None),
    "unknown_direction": _set(direction="sideways"),
    "extnumber_as_number": _set(extnumber=8001),
    "unknown_callmethod": _set(callmethod=99),
    "hangupcause_as_text": _set(hangupcause="NORMAL_CLEARING"),
    "nested_userkey": _set(userkey={"pressed": ["1", "#"]}),
    "id_twenty_digits": _bad_id(lambda _: "99999999999999999999"),
    "id_four_hundred_digits": _bad_id(lambda _: "9" * 400),
    "id_negative": _bad_id(lambda made: -made),
    "id_decimal_text": _bad_id(lambda _: "12.5"),
    "id_null": _bad_id(lambda _: None),
    "id_lookalike_digits": _bad_id(lambda made: str(made - 1).translate(ARABIC_INDIC)),
    "id_float": _bad_id(float),
    "id_in_a_list": _bad_id(lambda made: [made]),
    "inflated_totalitems": lambda bill: bill,
    "far_future_endtime": _set(endtime="2099-12-31 23:59:59"),
    "huge": _set(padding="x" * 300_000),
}


def _splice(name: str, value: Callable[[Bill], bytes]) -> Callable[[Bill], bytes]:
    """The bill's JSON with one member's value replaced by raw bytes."""

    def broken(bill: Bill) -> bytes:
        sound = orjson.dumps(bill)
        member = f'"{name}":'.encode() + orjson.dumps(bill[name])
        assert sound.count(member) == 1
        return sound.replace(member, f'"{name}":'.encode() + value(bill))

    return broken


# Each raw-bytes kind as the bytes it makes of the same call rendered without poison.
RAW: dict[str, Callable[[Bill], bytes]] = {
    "raw_lone_surrogate": _splice("userid", lambda _: b'"\\udc80"'),
    "raw_invalid_utf8": _splice(
        "destnumber", lambda bill: b'"' + bill["destnumber"].encode() + b'\xff"'
    ),
    "raw_nan_duration": _splice("duration", lambda _: b"NaN"),
    "raw_deep_userkey": _splice("userkey", lambda _: b"[" * 1100 + b"]" * 1100),
}


def is_well_formed(bill: Bill) -> bool:
    """The documented bill, strictly."""
    text = ("extnumber", "destnumber", "displaynumber", "userid", "memberid", "chengshudu",
            "customuuid", "recordfilename", "downloadip", "userkey")  # fmt: skip
    numbers = ("id", "duration", "billsec", "callmethod", "hangupdirection", "hangupcause")
    try:
        checks = [
            all(isinstance(bill[name], str) for name in text),
            all(type(bill[name]) is int and bill[name] >= 0 for name in numbers),
            bill["direction"] in ("callin", "callout"),
            1 <= bill["callmethod"] <= 6,
            bill["billsec"] <= bill["duration"],
            time.strptime(bill["starttime"], "%Y-%m-%d %H:%M:%S") is not None,
            time.strptime(bill["endtime"], "%Y-%m-%d %H:%M:%S") is not None,
            bill["answertime"] is None or bill["answertime"] <= bill["endtime"],
        ]
    except (KeyError, TypeError, ValueError):
        return False
    return all(checks)


# Kinds /admin/records shows as a sound bill by the test above: raw bytes (listed as before
# they were broken), a sound bill on an inflated page, and plausible-looking shapes.
LISTED_SOUND = frozenset(RAW) | {"inflated_totalitems", "far_future_endtime", "huge"}


async def get_bill_body(api: Client, **fields: Any) -> bytes:
    """GetBill's raw answer: pages holding raw-bytes poison are not JSON."""
    async with api.session.post(api.simulator.url, data=api.bill_fields(**fields)) as response:
        assert response.status == 200
        return await response.read()


async def between_sound_bills(api: Client, kind: str) -> int:
    """One bill of `kind` with a well-formed bill on either side; returns its id (2)."""
    await api.admin("POST", "generate", {"count": 1})
    answer = await api.admin("POST", "poison", {"kind": kind})
    await api.admin("POST", "generate", {"count": 1})
    assert answer == {"ids": [2], "kinds": [kind]}
    made: int = answer["ids"][0]
    return made


def unpoisoned(api: Client, made: int) -> Bill:
    """The record with id `made` rendered as if it were well-formed."""
    state = api.simulator.state
    renderer = BillRenderer(state.pools.vocabulary.strings, state.local_time, state.config.host)
    return renderer.render(state.store.rows([made - 1]), lambda bill, kind: None)[0]


def test_kinds_keep_their_shape_numbers_and_are_all_named() -> None:
    assert KIND_NAMES[: len(FIRST_KINDS)] == FIRST_KINDS
    assert set(KIND_NAMES) == set(SERVED) | set(RAW)
    assert len(KIND_NAMES) == len(set(KIND_NAMES)) == 28


async def test_admin_names_every_kind(client: Client) -> None:
    assert await client.admin("GET", "poison") == {"kinds": list(KIND_NAMES)}


@pytest.mark.parametrize("kind", list(SERVED))
async def test_a_json_kind_is_served_with_exactly_its_defect(client: Client, kind: str) -> None:
    made = await between_sound_bills(client, kind)
    body = await get_bill_body(client)

    result = orjson.loads(body)["data"]["result"]
    assert json.loads(body)["data"]["result"] == result
    before, served, after = result["bills"]
    expected = SERVED[kind](unpoisoned(client, made))
    assert served == expected
    assert list(served) == list(expected)  # the same members in the same order: id first
    assert type(served["id"]) is type(expected["id"])  # 123.0 stays a float
    listed = await client.all_records()
    assert [as_served(record) for record in listed] == [before, served, after]
    assert [record["poison"] for record in listed] == [None, kind, None]
    assert listed[1]["poison_id"] == made
    assert result["totalitems"] == (10**12 if kind == "inflated_totalitems" else 3)


@pytest.mark.parametrize("kind", list(RAW))
async def test_a_raw_bytes_kind_breaks_its_bill_and_nothing_else(client: Client, kind: str) -> None:
    made = await between_sound_bills(client, kind)
    body = await get_bill_body(client)

    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    start = body.index(b'{"id":%d,' % made)
    end = body.index(b',{"id":%d,' % (made + 1))
    sound = unpoisoned(client, made)
    assert body[start:end] == RAW[kind](sound)
    listed = await client.all_records()
    rest = orjson.loads(body[:start] + body[end + 1 :])["data"]["result"]
    assert rest["bills"] == [as_served(listed[0]), as_served(listed[2])]
    assert rest["totalitems"] == 3
    # The listing shows the bill as it was before its bytes were broken, and names the kind.
    assert as_served(listed[1]) == sound
    assert (listed[1]["poison"], listed[1]["poison_id"]) == (kind, made)


async def test_the_listing_stays_json_for_every_parser_and_names_each_kind(
    client: Client,
) -> None:
    await client.admin("POST", "generate", {"count": 2})
    await client.admin("POST", "inject", {"note": "injected"})
    answer = await client.admin("POST", "poison", [{"kind": kind} for kind in KIND_NAMES])
    assert answer == {"ids": list(range(4, 4 + len(KIND_NAMES))), "kinds": list(KIND_NAMES)}

    url = f"{client.simulator.admin_url}records?limit=100"
    async with client.session.get(url) as response:
        by_aiohttp = await response.json()
        by_json = json.loads(await response.read())

    assert by_aiohttp == by_json
    records = by_json["records"]
    assert [record["poison"] for record in records] == [None, None, None, *KIND_NAMES]
    assert [record.get("poison_id") for record in records] == [None] * 3 + answer["ids"]
    assert records[2] == {"id": 3, "note": "injected", "poison": None}
    assert (await client.admin("GET", "stats"))["records"]["poisoned"] == len(KIND_NAMES)


async def test_inflated_totalitems_only_on_the_pages_that_hold_the_bill(client: Client) -> None:
    made = await between_sound_bills(client, "inflated_totalitems")

    totals = [
        (await client.get_bill(itemsperpage=1, currentpage=page))["totalitems"]
        for page in (1, 2, 3)
    ]

    assert totals == [3, 10**12, 3]
    unqueried = await client.get_bill(syncflag=1, itemsperpage=2)
    assert [bill["id"] for bill in unqueried["bills"]] == [1, made]
    assert unqueried["totalitems"] == 10**12
    assert (await client.get_bill(syncflag=1))["totalitems"] == 1


async def test_a_lookalike_id_reads_as_the_genuine_bill_before_it(client: Client) -> None:
    made = await between_sound_bills(client, "id_lookalike_digits")
    bills = (await client.get_bill())["bills"]
    lookalike = bills[1]["id"]
    assert not lookalike.isascii()
    assert int(lookalike) == made - 1 == bills[0]["id"]  # the trap a lax reader falls into


async def test_a_huge_bill_is_valid_json_with_a_long_unknown_field(client: Client) -> None:
    await between_sound_bills(client, "huge")
    body = await get_bill_body(client)
    huge = orjson.loads(body)["data"]["result"]["bills"][1]
    assert huge["padding"] == "x" * HUGE_BILL_BYTES
    assert HUGE_BILL_BYTES < len(body) < HUGE_BILL_BYTES + 5_000


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"kind": "no_such_kind"}, "kind"),
        ({}, "kind"),
        ({"kind": 1}, "kind"),
        ({"kind": "huge", "count": 0}, "count"),
        ({"kind": "huge", "count": "2"}, "count"),
        ({"kind": "huge", "count": True}, "count"),
        ({"kind": "huge", "extra": 1}, "extra"),
        ([{"kind": "huge", "count": 60_000}, {"kind": "id_null", "count": 60_000}], "count"),
        ([], "list"),
        (["huge"], "object"),
        ("huge", "object"),
    ],
)
async def test_poison_requests_are_validated(client: Client, payload: Any, named: str) -> None:
    status, answer = await client.admin_status("POST", "poison", payload)
    assert status == 400
    assert named in answer["error"]
    assert (await client.admin("GET", "stats"))["records"]["visible"] == 0


async def test_poison_by_name_leaves_the_seeded_calls_alone(start: StartSimulator) -> None:
    """Poison by name draws from a random stream of its own: /admin/generate makes the same
    calls whether or not poison was asked for first."""
    plain = await start(clock=ManualClock(T0), seed=3)
    poisoned = await start(clock=ManualClock(T0), seed=3)
    await poisoned.admin("POST", "poison", {"kind": "id_null", "count": 5})
    await plain.admin("POST", "generate", {"count": 20})
    await poisoned.admin("POST", "generate", {"count": 20})

    def call(record: Bill) -> Bill:  # what does not depend on the id
        return {k: v for k, v in record.items() if k not in ("id", "recordfilename")}

    expected = [call(record) for record in await plain.all_records()]
    assert [call(record) for record in (await poisoned.all_records())[5:]] == expected


async def test_poison_rate_draws_every_kind_uniformly(start: StartSimulator) -> None:
    api = await start(faults=FaultConfig(poison_rate=1.0))
    await api.admin("POST", "generate", {"count": 40 * len(KIND_NAMES)})

    counts = Counter(record["poison"] for record in await api.all_records())

    assert set(counts) == set(KIND_NAMES)
    assert all(15 <= count <= 70 for count in counts.values()), counts


async def test_poison_rate_malforms_a_fraction_of_generated_bills(start: StartSimulator) -> None:
    api = await start(backlog=1000, faults=FaultConfig(poison_rate=0.3))
    await api.login()
    records = await api.all_records()

    poisoned = [record for record in records if record["poison"] is not None]
    assert 200 <= len(poisoned) <= 400
    assert (await api.admin("GET", "stats"))["records"]["poisoned"] == len(poisoned)
    assert all(is_well_formed(as_served(record)) for record in records if not record["poison"])
    malformed = [record for record in poisoned if record["poison"] not in LISTED_SOUND]
    assert not any(is_well_formed(as_served(record)) for record in malformed)
    assert len({record["poison"] for record in poisoned}) >= 20
    # Ids stay recognisable, whatever else is broken.
    made = [record.get("poison_id", record["id"]) for record in records]
    assert made == list(range(1, 1001))

    await api.admin("POST", "faults", {"poison_rate": 0.0})
    await api.admin("POST", "generate", {"count": 200})
    fresh = (await api.get_bill(currentpage=2))["bills"]
    assert len(fresh) == 200
    assert all(is_well_formed(bill) for bill in fresh)


async def test_poison_rate_switched_on_at_run_time(start: StartSimulator) -> None:
    api = await start()
    await api.login()
    await api.admin("POST", "faults", {"poison_rate": 1.0})
    await api.admin("POST", "generate", {"count": 50})
    records = await api.all_records()
    assert all(record["poison"] in KIND_NAMES for record in records)
    assert (await api.admin("GET", "stats"))["records"]["poisoned"] == 50


# --- what the fault suite expects of the connector (tests/faults/scenarios.py) -------------


def test_the_fault_suite_has_a_rule_for_every_kind() -> None:
    assert set(scenarios.POISON_RULES) == set(KIND_NAMES)


async def test_expected_destinations_sort_every_kind(client: Client) -> None:
    await client.admin("POST", "generate", {"count": 1})
    await client.admin("POST", "poison", [{"kind": kind} for kind in KIND_NAMES])
    records = await client.all_records()

    found = scenarios.expected_destinations(records)

    made = dict(zip(KIND_NAMES, range(2, 2 + len(KIND_NAMES)), strict=True))
    assert found.dead_without_id == {
        made[kind] for kind in KIND_NAMES if kind.startswith("id_") and kind != "id_as_string"
    }
    dead = {
        "impossible_starttime": "starttime",
        "missing_starttime": "starttime",
        "other_time_format": "endtime",
        "duration_not_a_number": "duration",
        "negative_billsec": "billsec",
        "answer_after_end": "answertime",
        "null_endtime": "endtime",
        "hangupcause_as_text": "hangupcause",
        "nested_userkey": "userkey",
        **dict.fromkeys(RAW),
        "far_future_endtime": "endtime",
        "huge": "padding",
    }
    assert found.dead == {made[kind]: field for kind, field in dead.items()}
    accepted = ("id_as_string", "unknown_direction", "extnumber_as_number", "unknown_callmethod")
    assert found.data == {1, made["inflated_totalitems"], *(made[kind] for kind in accepted)}
    assert len(found.data) + len(found.dead) + len(found.dead_without_id) == len(records)


async def test_poison_kind_is_told_from_content_where_content_tells(client: Client) -> None:
    await client.admin("POST", "poison", [{"kind": kind} for kind in KIND_NAMES])
    records = await client.all_records()
    assert [scenarios.poison_kind(record) for record in records] == list(KIND_NAMES)

    told = [scenarios.poison_kind(as_served(record)) for record in records]

    silent = frozenset(RAW) | {"inflated_totalitems"}
    assert told == [None if kind in silent else kind for kind in KIND_NAMES]


def test_a_dead_letter_without_an_id_is_found_by_its_memberid() -> None:
    value = orjson.dumps({"id": None, "memberid": "poison-id-4711", "userid": "0"})
    assert scenarios.bad_id_of(value) == 4711
    assert scenarios.bad_id_of(b'{"id": [9], "memberid": "poison-id-12"}') == 12
    assert scenarios.bad_id_of(b'{"id":3,"memberid":"M1"}') is None
