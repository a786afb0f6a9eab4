"""/readyz of a process with several sources: which sources are not ready, and when that makes
the process unready."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from cdr_connector.app import Connector
from cdr_connector.config import Settings
from cdr_connector.http import create_ops_app
from cdr_connector.runner import SourceRunner
from tests.fakes import FakeClock


def connector(fleet: bool) -> Connector:
    accounts = [{"name": n, "appid": f"a-{n}", "accesskey": "k"} for n in ("east", "west")]
    settings = Settings(sources=accounts, fleet={"enabled": fleet})  # type: ignore[arg-type]
    made = Connector(settings, clock=FakeClock())
    for each in settings.per_source():
        runner = SourceRunner(each, made.clock)
        made.runners[runner.name] = runner
    return made


def fail(made: Connector, name: str, why: str) -> None:
    made.runners[name].failure = why


async def readyz(made: Connector) -> tuple[int, Any]:
    app = create_ops_app(made.not_ready_reason, made.unready_sources)
    async with TestClient(TestServer(app)) as http:
        answer = await http.get("/readyz")
        return answer.status, await answer.json()


async def test_one_replica_with_an_unready_source_is_unready_and_names_it() -> None:
    made = connector(fleet=False)
    fail(made, "west", "appid not authorised")
    made.runners["east"].starting = None
    status, body = await readyz(made)
    assert status == 503
    assert body["reason"] == "source east: starting; source west: appid not authorised"


async def test_a_fleet_replica_stays_ready_and_names_its_unready_sources() -> None:
    made = connector(fleet=True)
    fail(made, "west", "appid not authorised")
    status, body = await readyz(made)
    assert status == 200
    assert body["unready_sources"] == {"east": "starting", "west": "appid not authorised"}


async def test_a_fleet_replica_that_is_stopping_is_not_ready() -> None:
    made = connector(fleet=True)
    made.request_stop()
    status, body = await readyz(made)
    assert (status, body["reason"]) == (503, "shutting down")
