"""The CLI: options, and a real run until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
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
    "argv", [("--drop-rate", "2"), ("--timezone", "Mars/Olympus"), ("--rate", "-1")]
)
def test_run_refuses_bad_values(argv: tuple[str, ...], caplog: pytest.LogCaptureFixture) -> None:
    assert cli.run(parse(*argv)) == 2
    assert argv[0].removeprefix("--").replace("-", "_") in caplog.text


async def test_runs_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cdr_connector.simulator.cli",
        "--port", "0", "--backlog", "100", "--rate", "0",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(_line_with(process.stderr, "listening on"), timeout=20)
        assert "appid=demo-appid" in line
        assert "backlog=100" in line
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert found is not None
        async with aiohttp.ClientSession() as session:
            fields = {"service": "App.Sip_Auth.Login", "appid": "demo-appid"}
            fields["accesskey"] = "demo-accesskey"
            async with session.post(found[1], data=fields) as response:
                assert (await response.json())["ret"] == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        assert "stopped" in (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    while line := (await stream.readline()).decode():
        if text in line:
            return line
    raise AssertionError(f"the simulator ended without logging {text!r}")
