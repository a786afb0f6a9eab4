"""The token's life cycle without HTTP: a TokenKeeper over a scripted login and a fake clock.
The client's own token tests (test_client_tokens.py, test_api_client.py) run the same rules
against a fake vendor over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from cdr_connector.api.tokens import TokenKeeper, renewal_interval
from cdr_connector.config import SourceSettings
from cdr_connector.errors import ConfigError
from tests.fakes import FakeClock, FakeRecorder

_names = itertools.count()


def source(lifetime: float = 600, renew_before: float = 60) -> SourceSettings:
    return SourceSettings(
        name=f"tokens{next(_names)}",
        api_url="http://127.0.0.1:1/api/",
        appid="a",
        accesskey="k",
        token_lifetime_seconds=lifetime,
        token_renew_before_seconds=renew_before,
    )


class Logins:
    """The vendor's login as a script: each call issues the next token, after `gate` opens."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> str:
        await self.gate.wait()
        value = f"tok-SECRET-{len(self.issued) + 1}"
        self.issued.append(value)
        return value


async def test_concurrent_requests_without_a_token_share_one_login() -> None:
    logins = Logins()
    logins.gate.clear()
    recorder = FakeRecorder()
    keeper = TokenKeeper(source(), FakeClock(), logins, recorder)
    waiting = [asyncio.create_task(keeper.valid()) for _ in range(5)]
    await asyncio.sleep(0)
    logins.gate.set()
    tokens = await asyncio.gather(*waiting)
    assert logins.issued == ["tok-SECRET-1"]
    assert {t.value for t in tokens} == {"tok-SECRET-1"}
    assert recorder.of("token_renewed") == [None], "one login reported, to the recorder given"


async def test_a_token_is_renewed_when_due_on_the_clock() -> None:
    clock = FakeClock()
    logins = Logins()
    keeper = TokenKeeper(source(lifetime=600, renew_before=60), clock, logins, FakeRecorder())
    first = await keeper.valid()
    clock.advance(539)
    assert await keeper.valid() is first
    clock.advance(1)
    renewed = await keeper.valid()
    assert (renewed.value, renewed.generation) == ("tok-SECRET-2", 2)


async def test_a_rejection_of_a_replaced_token_keeps_the_newer_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keeper = TokenKeeper(source(), FakeClock(), Logins(), FakeRecorder())
    old = await keeper.valid()
    new = await keeper.renew()
    with caplog.at_level(logging.INFO, logger="cdr_connector.api.tokens"):
        keeper.reject(old)
        assert keeper.current is new
        assert caplog.messages == [], "a late rejection of a replaced token is not news"
        keeper.reject(new)
    assert keeper.current is None
    # Says which token, and what comes next, without its value.
    assert caplog.messages == ["the vendor API rejected token 2 as expired; logging in again"]
    assert (await keeper.valid()).generation == 3


async def test_forget_makes_the_next_request_log_in() -> None:
    logins = Logins()
    keeper = TokenKeeper(source(), FakeClock(), logins, FakeRecorder())
    await keeper.valid()
    keeper.forget()
    assert keeper.current is None
    await keeper.valid()
    assert len(logins.issued) == 2


async def test_a_token_value_never_shows_in_a_repr() -> None:
    keeper = TokenKeeper(source(), FakeClock(), Logins(), FakeRecorder())
    token = await keeper.valid()
    for text in (repr(token), str(token), repr(keeper.current)):
        assert "SECRET" not in text
    assert "generation=1" in repr(token)


@pytest.mark.parametrize(("lifetime", "renew_before"), [(60, 60), (60, 61)])
def test_a_renewal_margin_not_shorter_than_the_lifetime_is_refused(
    lifetime: float, renew_before: float
) -> None:
    with pytest.raises(ConfigError, match="token_renew_before_seconds must be less"):
        renewal_interval(source(lifetime, renew_before))
