"""The CLI: options, and a real run until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from cdr_connector.simulator import FaultConfig, SimulatorConfig, cli

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_match_the_config_apart_from_the_port() -> None:
    config = cli.config_from_args(parse())
    assert config == SimulatorConfig(port=8080)


def test_every_option_reaches_the_config() -> None:
    config = cli.config_from_args(
        parse(
            "--host", "0.0.0.0", "--port", "9000", "--appid", "a", "--accesskey", "k",
            "--accounts", "4",
            "--seed", "3", "--rate", "7.5", "--backlog", "12", "--backlog-span", "60",
            "--timezone", "Europe/Berlin", "--token-ttl", "5",
            "--latency-ms", "1", "--jitter-ms", "2", "--http-5xx-rate", "0.1",
            "--ret-500-rate", "0.2", "--bad-json-rate", "0.3", "--drop-rate", "0.05",
            "--slow-rate", "0.01", "--slow-seconds", "9", "--racing", "--race-delay-ms", "3",
            "--competitor-interval", "4", "--competitor-batch", "6", "--poison-rate", "0.02",
        )
    )  # fmt: skip
    assert config == SimulatorConfig(
        host="0.0.0.0",
        port=9000,
        appid="a",
        accesskey="k",
        accounts=4,
        seed=3,
        rate=7.5,
        backlog=12,
        backlog_span=60.0,
        timezone="Europe/Berlin",
        token_ttl=5.0,
        faults=FaultConfig(
            latency_ms=1.0,
            jitter_ms=2.0,
            http_5xx_rate=0.1,
            ret_500_rate=0.2,
            bad_json_rate=0.3,
            drop_rate=0.05,
            slow_rate=0.01,
            slow_seconds=9.0,
            racing=True,
            race_delay_ms=3.0,
            competitor_interval=4.0,
            competitor_batch=6,
            poison_rate=0.02,
        ),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("--drop-rate", "2"),
        ("--timezone", "Mars/Olympus"),
        ("--rate", "-1"),
        ("--accounts", "0"),
        ("--accounts", "-3"),
    ],
)
def test_run_refuses_bad_values(argv: tuple[str, ...], caplog: pytest.LogCaptureFixture) -> None:
    assert cli.run(parse(*argv)) == 2
    assert argv[0].removeprefix("--").replace("-", "_") in caplog.text


@dataclass(frozen=True)
class CliRun:
    process: asyncio.subprocess.Process
    stderr: asyncio.StreamReader
    line: str  # the line saying where it listens
    url: str


@asynccontextmanager
async def cli_run(*argv: str) -> AsyncIterator[CliRun]:
    """`python -m cdr_connector.simulator.cli --port 0 ARGV`, until it listens; killed at
    the end if the test has not stopped it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cdr_connector.simulator.cli", "--port", "0", *argv,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(_line_with(process.stderr, "listening on"), timeout=20)
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert found is not None
        yield CliRun(process, process.stderr, line, found[1])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def login_answer(url: str, appid: str, accesskey: str) -> int:
    fields = {"service": "App.Sip_Auth.Login", "appid": appid, "accesskey": accesskey}
    async with aiohttp.ClientSession() as session, session.post(url, data=fields) as response:
        ret: int = (await response.json())["ret"]
    return ret


async def stop(run: CliRun) -> None:
    run.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run.process.wait(), timeout=10) == 0
    assert "stopped" in (await run.stderr.read()).decode()


async def test_runs_until_sigterm() -> None:
    async with cli_run("--backlog", "100", "--rate", "0") as run:
        assert "appid=demo-appid," in run.line
        assert "backlog=100" in run.line
        assert await login_answer(run.url, "demo-appid", "demo-accesskey") == 200
        await stop(run)


async def test_serves_several_accounts_until_sigterm() -> None:
    async with cli_run("--backlog", "20", "--rate", "0", "--accounts", "3") as run:
        assert "appid=demo-appid-1..demo-appid-3" in run.line
        assert "3 accounts, backlog and rate each" in run.line
        assert await login_answer(run.url, "demo-appid-3", "demo-accesskey-3") == 200
        assert await login_answer(run.url, "demo-appid", "demo-accesskey") == 601
        stats_url = f"{run.url}admin/stats"
        async with aiohttp.ClientSession() as session, session.get(stats_url) as response:
            stats = await response.json()
        assert stats["records"]["visible"] == 60
        assert stats["accounts"]["demo-appid-2"]["records"]["visible"] == 20
        await stop(run)


def test_help_describes_the_accounts_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "--accounts ACCOUNTS" in text
    assert "<appid>-i and <accesskey>-i" in text
    assert "?account=<appid>" in text


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    while line := (await stream.readline()).decode():
        if text in line:
            return line
    raise AssertionError(f"the simulator ended without logging {text!r}")
