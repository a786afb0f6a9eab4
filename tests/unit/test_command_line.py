"""The command line, with what each command runs replaced: the arguments it passes on, its
defaults, and the exit codes of its errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdr_connector import app, checks, tail
from cdr_connector.__main__ import main
from cdr_connector.errors import KafkaTransientError

WINDOW = ["--from", "2026-11-01 00:00:00", "--to", "2026-11-01 06:00:00"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A settings file; the root logger as it was is put back after `_load` configured it."""
    for name in ("CDR_CONFIG", "CDR_SOURCE__NAME", "CDR_FLEET__ENABLED"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "settings.toml"
    path.write_text(
        '[source]\nname = "east"\nappid = "a1"\naccesskey = "k1"\ntimezone = "Asia/Shanghai"\n'
        "[fleet]\nenabled = true\n"
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield path
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What run_connector, tail and run_checks were called with; each returns `ran["code"]`."""
    ran: dict[str, Any] = {"code": 0}

    def run_connector(settings: Any, backfill: Any = None) -> int:
        ran["settings"], ran["backfill"] = settings, backfill
        return int(ran["code"])

    def fake_tail(settings: Any, **options: Any) -> int:
        ran["settings"], ran["tail"] = settings, options
        return int(ran["code"])

    async def run_checks(settings: Any) -> int:
        ran["settings"] = settings
        return int(ran["code"])

    monkeypatch.setattr(app, "run_connector", run_connector)
    monkeypatch.setattr(tail, "tail", fake_tail)
    monkeypatch.setattr(checks, "run_checks", run_checks)
    return ran


def test_run_passes_the_loaded_settings_on_and_exits_with_their_code(
    config: Path, ran: dict[str, Any]
) -> None:
    ran["code"] = 1
    assert main(["run", "-c", str(config)]) == 1
    assert ran["settings"].source.name == "east"
    assert ran["backfill"] is None


def test_a_backfill_is_the_window_in_pbx_time_in_hour_slices_outside_any_fleet(
    config: Path, ran: dict[str, Any]
) -> None:
    assert main(["backfill", "-c", str(config), *WINDOW]) == 0

    zone = ZoneInfo("Asia/Shanghai")
    backfill = ran["backfill"]
    assert (backfill.start, backfill.end) == (
        datetime(2026, 11, 1, 0, tzinfo=zone),
        datetime(2026, 11, 1, 6, tzinfo=zone),
    )
    assert backfill.slice_seconds == 3600.0
    assert ran["settings"].fleet.enabled is False


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--slice-seconds", "0.5"], "--slice-seconds must be at least 1"),
        (
            ["--from", "2026-11-01 06:00:00", "--to", "2026-11-01 05:59:59"],
            "--to '2026-11-01 05:59:59' is before --from '2026-11-01 06:00:00'",
        ),
        (
            ["--from", "2026-11-01T00:00:00"],
            "--from '2026-11-01T00:00:00' is not a time in the form 'yyyy-mm-dd hh:mm:ss'",
        ),
        (["--to", "yesterday"], "--to 'yesterday' is not a time in the form"),
    ],
)
def test_a_bad_backfill_window_is_a_settings_error_exit_2(
    config: Path,
    ran: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    complaint: str,
) -> None:
    assert main(["backfill", "-c", str(config), *WINDOW, *extra]) == 2
    assert f"cdr-connector: {complaint}" in capsys.readouterr().err
    assert "backfill" not in ran


def test_a_one_second_slice_and_an_empty_window_are_allowed(
    config: Path, ran: dict[str, Any]
) -> None:
    same = ["--from", "2026-11-01 06:00:00", "--to", "2026-11-01 06:00:00"]
    assert main(["backfill", "-c", str(config), *same, "--slice-seconds", "1"]) == 0
    assert ran["backfill"].slice_seconds == 1.0


def test_a_backfill_needs_its_window(config: Path, ran: dict[str, Any]) -> None:
    for missing in (WINDOW[:2], WINDOW[2:]):
        with pytest.raises(SystemExit) as usage:
            main(["backfill", "-c", str(config), *missing])
        assert usage.value.code == 2


def test_tail_passes_its_options_on_with_never_ending_defaults(
    config: Path, ran: dict[str, Any]
) -> None:
    assert main(["tail", "-c", str(config)]) == 0
    assert ran["tail"] == {
        "from_beginning": False,
        "max_records": 0,
        "idle_exit_seconds": 0.0,
        "dead_letters": False,
    }

    given = ["--from-beginning", "--max", "5", "--idle-exit", "2.5", "--dead-letters"]
    main(["tail", "-c", str(config), *given])
    assert ran["tail"] == {
        "from_beginning": True,
        "max_records": 5,
        "idle_exit_seconds": 2.5,
        "dead_letters": True,
    }


def test_check_exits_with_what_the_checks_answered(config: Path, ran: dict[str, Any]) -> None:
    ran["code"] = 1
    assert main(["check", "-c", str(config)]) == 1
    assert ran["settings"].source.appid == "a1"


def test_a_connector_error_is_one_line_and_exit_1_and_ctrl_c_is_130(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(settings: Any, backfill: Any = None) -> int:
        raise KafkaTransientError("cannot reach Kafka at k:1")

    def interrupted(settings: Any, backfill: Any = None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "run_connector", failing)
    assert main(["run", "-c", str(config)]) == 1
    assert capsys.readouterr().err == "cdr-connector: cannot reach Kafka at k:1\n"

    monkeypatch.setattr(app, "run_connector", interrupted)
    assert main(["run", "-c", str(config)]) == 130


def test_the_log_is_configured_from_the_settings(config: Path, ran: dict[str, Any]) -> None:
    config.write_text(config.read_text() + '[log]\nlevel = "WARNING"\nformat = "json"\n')

    main(["run", "-c", str(config)])

    assert logging.getLogger().level == logging.WARNING


def test_simulate_takes_the_simulators_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdr_connector.simulator import cli as simulator_cli

    seen: dict[str, Any] = {}

    def run(args: Any) -> int:
        seen["args"] = args
        return 0

    monkeypatch.setattr(simulator_cli, "run", run)
    assert main(["simulate", "--port", "0", "--accounts", "3"]) == 0
    assert (seen["args"].port, seen["args"].accounts) == (0, 3)
