"""How fast the simulator serves GetBill pages of 1000 records from a large backlog.

Starts the simulator's CLI as a subprocess (so that client and server do not share one
interpreter), waits for its backlog preload, then reads `syncflag=1` pages with aiohttp until
the backlog is drained or `--pages` pages were read, and prints the preload time, pages/s and
records/s. Usage: `python bench/simulator_pages.py [--backlog 1000000] [--pages 500]
[--concurrency 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path

import aiohttp
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
APPID, ACCESSKEY = "bench", "bench-secret"
PAGE_SIZE = 1000


async def start_simulator(backlog: int) -> tuple[asyncio.subprocess.Process, str, float]:
    """The process, its URL and the preload time it logged."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cdr_connector.simulator.cli",
        "--port", "0", "--rate", "0", "--backlog", str(backlog),
        "--appid", APPID, "--accesskey", ACCESSKEY,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    preload = 0.0
    while line := (await process.stderr.readline()).decode():
        if found := re.search(r"backlog of \d+ records in ([\d.]+) s", line):
            preload = float(found[1])
        if found := re.search(r"listening on (\S+)", line):
            return process, found[1], preload
    raise SystemExit(f"the simulator exited with {await process.wait()}")


async def read_pages(session: aiohttp.ClientSession, url: str, token: str, pages: int) -> int:
    fields = {
        "service": "App.Sip_Cdr.GetBill",
        "token": token,
        "starttime": "2000-01-01 00:00:00",
        "endtime": "2099-12-31 23:59:59",
        "syncflag": "1",
        "direction": "3",
        "callmethod": "0",
        "currentpage": "1",
        "itemsperpage": str(PAGE_SIZE),
    }
    records = 0
    for _ in range(pages):
        async with session.post(url, data=fields) as response:
            answer = orjson.loads(await response.read())
        bills = answer["data"]["result"]["bills"]
        if not bills:
            break
        records += len(bills)
    return records


async def main(backlog: int, pages: int, concurrency: int) -> None:
    process, url, preload = await start_simulator(backlog)
    try:
        async with aiohttp.ClientSession() as session:
            login = {"service": "App.Sip_Auth.Login", "appid": APPID, "accesskey": ACCESSKEY}
            async with session.post(url, data=login) as response:
                token = orjson.loads(await response.read())["data"]["result"]["token"]
            began = time.perf_counter()
            share = pages // concurrency
            counts = await asyncio.gather(
                *(read_pages(session, url, token, share) for _ in range(concurrency))
            )
            elapsed = time.perf_counter() - began
    finally:
        process.terminate()
        await process.wait()
    records = sum(counts)
    print(f"backlog preload: {backlog} records in {preload:.1f} s")
    print(f"readers: {concurrency}, pages of {PAGE_SIZE} read: {records // PAGE_SIZE}")
    print(f"pages/s: {records / PAGE_SIZE / elapsed:.1f}")
    print(f"records/s: {records / elapsed:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=500, help="pages to read in all")
    parser.add_argument("--concurrency", type=int, default=1, help="concurrent readers")
    options = parser.parse_args()
    asyncio.run(main(options.backlog, options.pages, options.concurrency))
