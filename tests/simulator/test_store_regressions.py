"""Store behaviour found through the connector's end-to-end tests."""

from tests.simulator.conftest import StartSimulator


async def test_records_appended_to_a_fully_queried_block_are_still_served(
    start: StartSimulator,
) -> None:
    api = await start(backlog=3000, backlog_span=3600.0)
    await api.login()
    drained = 0
    while ids := await api.bill_ids(syncflag=1):
        drained += len(ids)
    assert drained == 3000
    assert await api.bill_ids(syncflag=1) == []  # passes over the fully queried blocks
    await api.admin("POST", "generate", {"count": 700})
    served: list[int] = []
    while ids := await api.bill_ids(syncflag=1):
        served.extend(ids)
    assert served == list(range(3001, 3701))
