"""`cdr-connector simulate`: run the simulator until SIGINT or SIGTERM.

The main CLI calls `add_arguments` and `run`; `main` runs it without the rest of the project's
CLI (`python -m cdr_connector.simulator.cli --port 8080`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from cdr_connector.simulator.config import MAX_ACCOUNTS, FaultConfig, SimulatorConfig
from cdr_connector.simulator.running import running_simulator

log = logging.getLogger(__name__)

_DEFAULTS = SimulatorConfig()
_FAULT_DEFAULTS = FaultConfig()

_SERVER_OPTIONS: tuple[tuple[str, type[str] | type[float] | type[int], object, str], ...] = (
    ("--host", str, _DEFAULTS.host, "address to listen on"),
    ("--port", int, 8080, "port to listen on, 0 for any free one"),
    ("--appid", str, _DEFAULTS.appid, "appid accepted by Login"),
    ("--accesskey", str, _DEFAULTS.accesskey, "accesskey accepted by Login"),
    (
        "--accounts",
        int,
        _DEFAULTS.accounts,
        f"vendor accounts served, 1..{MAX_ACCOUNTS}; above 1, account i logs in with "
        "<appid>-i and <accesskey>-i (i from 1) and has records of its own, --rate, "
        "--backlog and faults applying to each; /admin/ takes ?account=<appid>",
    ),
    ("--seed", int, _DEFAULTS.seed, "same seed, same records"),
    ("--rate", float, _DEFAULTS.rate, "calls per second made visible live, 0 for none"),
    ("--backlog", int, _DEFAULTS.backlog, "unqueried records preloaded at start"),
    (
        "--backlog-span",
        float,
        _DEFAULTS.backlog_span,
        "the backlog's calls end in this many seconds before start",
    ),
    ("--timezone", str, _DEFAULTS.timezone, "the PBX's IANA time zone"),
    ("--token-ttl", float, _DEFAULTS.token_ttl, "token lifetime in seconds"),
)

# (option, type, help) of every fault knob; the option's dest is the FaultConfig field.
_FAULT_OPTIONS: tuple[tuple[str, type[float] | type[int], str], ...] = (
    ("--latency-ms", float, "added latency of every API request, in ms"),
    ("--jitter-ms", float, "random extra latency, uniform in 0..N ms"),
    ("--http-5xx-rate", float, "fraction of API requests answered HTTP 502/503"),
    ("--ret-500-rate", float, "fraction of API requests answered ret 500"),
    ("--bad-json-rate", float, "fraction answered with a body that is not valid JSON"),
    ("--drop-rate", float, "fraction of connections closed without an answer"),
    ("--slow-rate", float, "fraction answered only after --slow-seconds"),
    ("--slow-seconds", float, "how long a slow answer takes"),
    ("--race-delay-ms", float, "with --racing: how long marking waits"),
    ("--competitor-interval", float, "seconds between reads of a competing syncflag=1 client"),
    ("--competitor-batch", int, "records the competing client takes per read"),
    ("--poison-rate", float, "fraction of generated bills served malformed"),
)


def _fault_dests() -> list[str]:
    return [option.removeprefix("--").replace("-", "_") for option, _, _ in _FAULT_OPTIONS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for option, kind, default, text in _SERVER_OPTIONS:
        parser.add_argument(
            option, type=kind, default=default, help=f"{text} (default: %(default)s)"
        )
    faults = parser.add_argument_group("faults (also switchable at run time: POST /admin/faults)")
    for (option, kind, text), dest in zip(_FAULT_OPTIONS, _fault_dests(), strict=True):
        default = getattr(_FAULT_DEFAULTS, dest)
        faults.add_argument(
            option, type=kind, default=default, help=f"{text} (default: %(default)s)"
        )
    faults.add_argument(
        "--racing",
        action="store_true",
        help="let concurrent syncflag=1 readers get the same records",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """ValueError if a value is out of range."""
    knobs = {name: getattr(args, name) for name in _fault_dests()}
    fault_config = FaultConfig(racing=args.racing, **knobs)
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        appid=args.appid,
        accesskey=args.accesskey,
        accounts=args.accounts,
        seed=args.seed,
        rate=args.rate,
        backlog=args.backlog,
        backlog_span=args.backlog_span,
        timezone=args.timezone,
        token_ttl=args.token_ttl,
        faults=fault_config,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a clean stop, 2 for bad options, 1 if the server
    cannot start."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        log.error("simulator: %s", exc)
        return 2
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        log.error("simulator cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    return 0


async def _serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running_simulator(config) as simulator:
        fleet = (
            f"; {config.accounts} accounts, backlog and rate each" if config.accounts > 1 else ""
        )
        log.info(
            "simulator listening on %s (appid=%s, backlog=%d, rate=%g/s, seed=%d, timezone=%s%s)",
            simulator.url,
            simulator.fleet.describe(),
            config.backlog,
            config.rate,
            config.seed,
            config.timezone,
            fleet,
        )
        await stop.wait()
    log.info("simulator stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cdr_connector.simulator.cli [options]`, the simulator on its own."""
    parser = argparse.ArgumentParser(prog="simulator", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
