"""The command line: run, check, schema, tail, simulate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from cdr_connector import __version__
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError, ConfigError

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"cdr-connector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CdrConnectorError as exc:
        print(f"cdr-connector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdr-connector",
        description="Stream call detail records from the vendor API into Kafka, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"cdr-connector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the connector until SIGTERM/SIGINT")
    _add_config_argument(run)
    run.set_defaults(handler=_run)
    _add_backfill_command(commands)

    check = commands.add_parser(
        "check", help="check login, Kafka, topics and registry; exit 0 when all pass"
    )
    _add_config_argument(check)
    check.set_defaults(handler=_check)

    schema = commands.add_parser("schema", help="print the Avro schema of the records")
    schema.set_defaults(handler=_schema)
    _add_tail_command(commands)

    from cdr_connector.simulator import cli as simulator_cli

    simulate = commands.add_parser("simulate", help="run the vendor API simulator")
    simulator_cli.add_arguments(simulate)
    simulate.set_defaults(handler=simulator_cli.run)
    return parser


# What argparse's add_subparsers returns; its class is private to argparse.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_backfill_command(commands: Commands) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="publish a historical window (syncflag=3) exactly once, alongside the live stream",
        description=(
            "Runs the connector (live polling included) and publishes every record dialled in "
            "[--from, --to] (PBX local time) that is not committed yet, in slices fetched "
            "concurrently; exits 0 once the window is committed. It uses the source's "
            "transactional.id, so it takes over from (fences) a running instance of the same "
            "source: run it instead of that instance, then start the instance again."
        ),
    )
    _add_config_argument(backfill)
    backfill.add_argument("--from", dest="start", required=True, help="yyyy-mm-dd hh:mm:ss")
    backfill.add_argument("--to", dest="end", required=True, help="yyyy-mm-dd hh:mm:ss")
    backfill.add_argument(
        "--slice-seconds", type=float, default=3600.0, help="width of one slice (default 3600)"
    )
    backfill.add_argument(
        "--source", help="with [[sources]]: the one source to backfill (by its name)"
    )
    backfill.set_defaults(handler=_backfill)


def _add_tail_command(commands: Commands) -> None:
    tail = commands.add_parser(
        "tail", help="print committed records of the topic as JSON lines (read_committed)"
    )
    _add_config_argument(tail)
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=int, default=0, help="stop after this many records (0: never)")
    tail.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        help="stop after this many seconds without a record (0: never)",
    )
    tail.add_argument("--dead-letters", action="store_true", help="read the dead-letter topic")
    tail.set_defaults(handler=_tail)


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="TOML settings file (also CDR_CONFIG); CDR_* environment variables override it",
    )


def _load(args: argparse.Namespace) -> Settings:
    """The validated settings, librdkafka's view of them included; raises ConfigError."""
    from cdr_connector.config import load_settings
    from cdr_connector.kafka_clients import validate_client_config
    from cdr_connector.logs import configure_logging

    settings = load_settings(args.config)
    validate_client_config(settings)
    configure_logging(settings.log.level, settings.log.format)
    return settings


def _run(args: argparse.Namespace) -> int:
    from cdr_connector.app import run_connector

    return run_connector(_load(args))


def _backfill(args: argparse.Namespace) -> int:
    from cdr_connector.app import run_connector
    from cdr_connector.pipeline import Backfill

    settings = _one_source(_load(args), args.source)
    zone = settings.source.zone
    start = _pbx_time(args.start, "--from").replace(tzinfo=zone)
    end = _pbx_time(args.end, "--to").replace(tzinfo=zone)
    if end < start:
        raise ConfigError(f"--to {args.end!r} is before --from {args.start!r}")
    if args.slice_seconds < 1:
        raise ConfigError("--slice-seconds must be at least 1")
    return run_connector(settings, Backfill(start, end, args.slice_seconds))


def _one_source(settings: Settings, name: str | None) -> Settings:
    """The settings of the source to backfill, on its own: never a fleet member (it would be
    given other sources), and with several sources only the one `--source` names."""
    sources = {each.source.name: each for each in settings.per_source()}
    if name is None and len(sources) > 1:
        raise ConfigError(f"backfill takes one source: add --source, one of {', '.join(sources)}")
    chosen = sources.get(name) if name is not None else next(iter(sources.values()))
    if chosen is None:
        raise ConfigError(f"--source {name!r} is none of the sources: {', '.join(sources)}")
    fleet = chosen.fleet.model_copy(update={"enabled": False})
    return chosen.model_copy(update={"fleet": fleet})


def _pbx_time(text: str, option: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a time in the form 'yyyy-mm-dd hh:mm:ss' (PBX local time)"
        ) from None


def _check(args: argparse.Namespace) -> int:
    from cdr_connector.checks import run_checks

    settings = _load(args)
    return asyncio.run(run_checks(settings))


def _schema(_args: argparse.Namespace) -> int:
    from cdr_connector.avro import load_schema_text

    print(load_schema_text())
    return 0


def _tail(args: argparse.Namespace) -> int:
    from cdr_connector.tail import tail

    settings = _load(args)
    return tail(
        settings,
        from_beginning=args.from_beginning,
        max_records=args.max,
        idle_exit_seconds=args.idle_exit,
        dead_letters=args.dead_letters,
    )


if __name__ == "__main__":
    sys.exit(main())
