"""Several vendor accounts in one simulator (`accounts`, `--accounts`): each logs in with its own
suffixed credentials, its token reads and marks only its records, and /admin/ acts on the
account `?account=` names."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cdr_connector.simulator import ManualClock, SimulatorConfig
from tests.simulator.conftest import (
    ACCESSKEY,
    APPID,
    GET_RECORD_FILE,
    LOGIN,
    T0,
    Client,
    StartSimulator,
    advance,
)

FIRST, SECOND = f"{APPID}-1", f"{APPID}-2"


async def account(api: Client, index: int) -> Client:
    """A client of the simulator `api` speaks to, logged in as account `index`."""
    client = Client(api.session, api.simulator)
    await client.login(f"{APPID}-{index}", f"{ACCESSKEY}-{index}")
    return client


def content(bill: dict[str, Any]) -> tuple[Any, ...]:
    """A bill without its id, which every account numbers from 1."""
    return tuple(sorted((key, str(value)) for key, value in bill.items() if key != "id"))


async def test_each_account_has_its_own_records(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=300)
    first, second = await account(api, 1), await account(api, 2)

    ones = (await first.get_bill())["bills"]
    twos = (await second.get_bill())["bills"]

    assert [bill["id"] for bill in ones] == [bill["id"] for bill in twos] == list(range(1, 301))
    assert not {content(bill) for bill in ones} & {content(bill) for bill in twos}


async def test_a_consuming_read_marks_only_its_own_accounts_records(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=50)
    first, second = await account(api, 1), await account(api, 2)

    assert await first.bill_ids(syncflag=1, itemsperpage=20) == list(range(1, 21))

    assert (await api.admin("GET", f"stats?account={FIRST}"))["records"]["unqueried"] == 30
    assert (await api.admin("GET", f"stats?account={SECOND}"))["records"]["unqueried"] == 50
    assert await second.bill_ids(syncflag=2) == []
    assert await second.bill_ids(syncflag=1, itemsperpage=100) == list(range(1, 51))
    assert await first.bill_ids(syncflag=1, itemsperpage=100) == list(range(21, 51))
    assert await first.bill_ids(syncflag=2, itemsperpage=100) == list(range(1, 51))


@pytest.mark.parametrize(
    ("appid", "accesskey"),
    [
        (FIRST, f"{ACCESSKEY}-2"),  # another account's key
        (APPID, ACCESSKEY),  # the unsuffixed credentials name no account of several
        (f"{APPID}-3", f"{ACCESSKEY}-3"),  # past the last account
        (f"{APPID}-0", f"{ACCESSKEY}-0"),
    ],
)
async def test_credentials_of_no_account_are_refused(
    start: StartSimulator, appid: str, accesskey: str
) -> None:
    api = await start(accounts=2)

    answer = await api.call({"service": LOGIN, "appid": appid, "accesskey": accesskey})

    assert answer["ret"] == 601
    assert answer["msg"] == "appid not authorised"


async def test_a_token_of_no_account_is_refused(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=5)
    await account(api, 1)
    api.token = "f" * 32

    answer = await api.call(api.bill_fields())

    assert answer["ret"] == 600
    stats = await api.admin("GET", "stats")
    assert stats["requests"]["App.Sip_Cdr.GetBill"] == {"ret_600": 1}
    assert all("App.Sip_Cdr.GetBill" not in each["requests"] for each in stats["accounts"].values())


async def test_a_recording_is_known_only_to_its_own_accounts_token(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=100)
    first, second = await account(api, 1), await account(api, 2)
    bills = (await first.get_bill())["bills"]
    filename = next(bill["recordfilename"] for bill in bills if bill["recordfilename"])

    own = await first.call({"service": GET_RECORD_FILE, "token": first.token, "filename": filename})
    other = await second.call(
        {"service": GET_RECORD_FILE, "token": second.token, "filename": filename}
    )

    assert own["ret"] == 200
    assert other["ret"] == 400
    async with api.session.get(own["data"]["result"]["url"]) as response:
        assert response.status == 200


async def test_stats_without_an_account_are_totals_and_each_account(start: StartSimulator) -> None:
    api = await start(accounts=3, backlog=40, rate=1.5)
    first = await account(api, 1)
    await first.bill_ids(syncflag=1, itemsperpage=10)
    await api.call({"service": LOGIN, "appid": "stranger", "accesskey": "x"})

    stats = await api.admin("GET", "stats")

    assert set(stats["accounts"]) == {FIRST, SECOND, f"{APPID}-3"}
    assert stats["accounts"][FIRST]["records"]["unqueried"] == 30
    assert stats["accounts"][SECOND]["records"]["unqueried"] == 40
    assert stats["records"]["visible"] == 120
    assert stats["records"]["unqueried"] == 110
    assert stats["records"]["queried"] == 10
    assert stats["requests"] == {
        "App.Sip_Auth.Login": {"ret_200": 1, "ret_601": 1},
        "App.Sip_Cdr.GetBill": {"ret_200": 1},
    }
    assert stats["accounts"][FIRST]["requests"] == {
        "App.Sip_Auth.Login": {"ret_200": 1},
        "App.Sip_Cdr.GetBill": {"ret_200": 1},
    }
    assert stats["live"] == {"rate": 4.5, "paused": False}
    assert await api.admin("GET", f"stats?account={SECOND}") == stats["accounts"][SECOND]


async def test_admin_records_inject_and_generate_act_on_the_named_account(
    start: StartSimulator,
) -> None:
    api = await start(accounts=2, backlog=5)
    first, second = await account(api, 1), await account(api, 2)

    injected = await api.admin("POST", f"inject?account={SECOND}", {"note": "only for two"})
    generated = await api.admin("POST", f"generate?account={FIRST}", {"count": 3})
    poisoned = await api.admin("POST", f"poison?account={FIRST}", {"kind": "id_as_string"})

    assert injected["ids"] == [6]
    assert generated == {"first_id": 6, "last_id": 8, "count": 3}
    assert poisoned["ids"] == [9]
    assert len((await first.get_bill())["bills"]) == 9
    assert (await second.get_bill())["bills"][-1] == {"id": 6, "note": "only for two"}
    listed = await api.admin("GET", f"records?account={SECOND}")
    assert [record["id"] for record in listed["records"]] == list(range(1, 7))
    assert listed["visible"] == 6


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", "records", None),
        ("POST", "inject", {"note": 1}),
        ("POST", "generate", {"count": 1}),
        ("POST", "poison", {"kind": "id_as_string"}),
    ],
)
async def test_one_accounts_endpoints_refuse_no_account_naming_them(
    start: StartSimulator, method: str, path: str, payload: Any
) -> None:
    api = await start(accounts=3)

    status, answer = await api.admin_status(method, path, payload)

    assert status == 400
    assert "?account=" in answer["error"]
    assert f"{APPID}-1..{APPID}-3" in answer["error"]
    assert (await api.admin("GET", "stats"))["records"]["visible"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "stats"),
        ("GET", "records"),
        ("GET", "faults"),
        ("POST", "faults"),
        ("POST", "pause"),
        ("POST", "generate"),
        ("POST", "revoke-tokens"),
    ],
)
@pytest.mark.parametrize("accounts", [1, 2])
async def test_an_unknown_account_is_404_naming_the_accounts(
    start: StartSimulator, method: str, path: str, accounts: int
) -> None:
    api = await start(accounts=accounts)
    payload = {"count": 1} if path == "generate" else {} if method == "POST" else None

    status, answer = await api.admin_status(method, f"{path}?account={APPID}-9", payload)

    assert status == 404
    assert f"no account '{APPID}-9'" in answer["error"]
    assert (APPID if accounts == 1 else f"{APPID}-1..{APPID}-2") in answer["error"]
    assert (await api.admin("GET", "stats"))["records"]["visible"] == 0


async def test_a_one_account_simulator_takes_its_appid_as_account(start: StartSimulator) -> None:
    api = await start(backlog=7)

    named = await api.admin("GET", f"stats?account={APPID}")

    assert named == await api.admin("GET", "stats")
    assert "accounts" not in named
    assert named["records"]["visible"] == 7


async def test_faults_of_one_account_spare_the_others(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=5)
    first, second = await account(api, 1), await account(api, 2)

    changed = await api.admin("POST", f"faults?account={SECOND}", {"ret_500_rate": 1.0})

    assert changed["ret_500_rate"] == 1.0
    assert (await second.call(second.bill_fields()))["ret"] == 500
    assert (await first.call(first.bill_fields()))["ret"] == 200
    every = await api.admin("GET", "faults")
    assert every["accounts"][FIRST]["ret_500_rate"] == 0.0
    assert every["accounts"][SECOND]["ret_500_rate"] == 1.0
    assert await api.admin("GET", f"faults?account={SECOND}") == every["accounts"][SECOND]


async def test_faults_without_an_account_change_every_account(start: StartSimulator) -> None:
    api = await start(accounts=2, backlog=5)
    first, second = await account(api, 1), await account(api, 2)

    changed = await api.admin("POST", "faults", {"ret_500_rate": 1.0})

    assert {each["ret_500_rate"] for each in changed["accounts"].values()} == {1.0}
    assert (await first.call(first.bill_fields()))["ret"] == 500
    assert (await second.call(second.bill_fields()))["ret"] == 500


async def test_a_bad_fault_update_changes_no_account(start: StartSimulator) -> None:
    api = await start(accounts=2)
    before = await api.admin("GET", "faults")

    status, answer = await api.admin_status("POST", "faults", {"drop_rate": 0.5, "nope": 1})

    assert status == 400
    assert "nope" in answer["error"]
    assert await api.admin("GET", "faults") == before


async def test_revoking_one_accounts_tokens_keeps_the_others(start: StartSimulator) -> None:
    api = await start(accounts=2)
    first, second = await account(api, 1), await account(api, 2)

    assert await api.admin("POST", f"revoke-tokens?account={FIRST}", {}) == {"revoked": 1}

    assert (await first.call(first.bill_fields()))["ret"] == 600
    assert (await second.call(second.bill_fields()))["ret"] == 200
    assert await api.admin("POST", "revoke-tokens", {}) == {"revoked": 1}
    assert (await second.call(second.bill_fields()))["ret"] == 600


async def test_each_account_has_live_traffic_and_pauses_on_its_own(start: StartSimulator) -> None:
    clock = ManualClock(T0)
    api = await start(clock=clock, accounts=2, rate=5.0)
    await advance(clock, 20)

    def visible(stats: dict[str, Any], appid: str) -> int:
        count: int = stats["accounts"][appid]["records"]["visible"]
        return count

    stats = await api.admin("GET", "stats")
    assert visible(stats, FIRST) > 40
    assert visible(stats, SECOND) > 40
    await api.admin("POST", f"pause?account={FIRST}")
    paused = await api.admin("GET", "stats")
    await advance(clock, 20)

    final = await api.admin("GET", "stats")
    assert visible(final, FIRST) == visible(paused, FIRST)
    assert visible(final, SECOND) > visible(paused, SECOND) + 40
    assert final["accounts"][FIRST]["live"]["paused"] is True
    assert final["live"]["paused"] is False
    await api.admin("POST", "pause")
    assert (await api.admin("GET", "stats"))["live"]["paused"] is True


async def test_the_accounts_share_their_pools_but_not_their_seeds(start: StartSimulator) -> None:
    api = await start(accounts=3)
    accounts = list(api.simulator.fleet.accounts.values())

    assert all(each.pools is accounts[0].pools for each in accounts)
    assert len({each.config.seed for each in accounts}) == 3
    with pytest.raises(LookupError, match=re.escape(f"{APPID}-1..{APPID}-3")):
        _ = api.simulator.state


async def test_the_same_seed_gives_each_account_the_same_records(start: StartSimulator) -> None:
    once = await start(clock=ManualClock(T0), accounts=2, backlog=30)
    again = await start(clock=ManualClock(T0), accounts=2, backlog=30)

    first = await once.admin("GET", f"records?account={SECOND}")
    second = await again.admin("GET", f"records?account={SECOND}")

    assert first["records"] == second["records"]


def test_one_account_is_the_config_itself() -> None:
    config = SimulatorConfig(appid="a", accesskey="k")
    assert config.account_configs() == [config]


def test_several_accounts_take_suffixed_credentials() -> None:
    config = SimulatorConfig(appid="a", accesskey="k", accounts=3, backlog=9, rate=0.5)

    accounts = config.account_configs()

    assert [(each.appid, each.accesskey) for each in accounts] == [
        ("a-1", "k-1"),
        ("a-2", "k-2"),
        ("a-3", "k-3"),
    ]
    assert {(each.backlog, each.rate, each.accounts) for each in accounts} == {(9, 0.5, 1)}


@pytest.mark.parametrize("accounts", [0, -1, 1001])
def test_a_count_of_accounts_out_of_range_is_refused(accounts: int) -> None:
    with pytest.raises(ValueError, match=r"accounts must be 1\.\.1000"):
        SimulatorConfig(accounts=accounts)
