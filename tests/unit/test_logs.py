"""The log lines a collector reads: one JSON object a line, with what `extra=` carried."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest

from cdr_connector.logs import JsonFormatter, configure_logging


def _record(message: str = "fetched %d bills", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "cdr_connector.poller", logging.WARNING, "p.py", 1, message, args, None
    )
    record.created = 1_764_151_200.5  # 2025-11-26 10:00:00.500 UTC
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_line_is_one_json_object_with_time_level_logger_and_the_formatted_message() -> None:
    line = JsonFormatter().format(_record("fetched %d bills", 3))

    assert "\n" not in line
    assert orjson.loads(line) == {
        "time": "2025-11-26T10:00:00.500+00:00",
        "level": "WARNING",
        "logger": "cdr_connector.poller",
        "message": "fetched 3 bills",
    }


def test_what_extra_carried_is_in_the_line_and_a_value_json_cannot_hold_becomes_text() -> None:
    line = orjson.loads(JsonFormatter().format(_record(event="startup_wait", failures=2, at={1})))

    assert line["event"] == "startup_wait"
    assert line["failures"] == 2
    assert line["at"] == "{1}"
    assert "args" not in line and "msg" not in line and "levelno" not in line


def test_an_exception_is_in_the_line_with_its_traceback() -> None:
    try:
        raise ValueError("bad page")
    except ValueError:
        record = _record("page failed")
        record.exc_info = sys.exc_info()

    line = orjson.loads(JsonFormatter().format(record))

    assert line["message"] == "page failed"
    assert line["exception"].startswith("Traceback")
    assert "ValueError: bad page" in line["exception"]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access").level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(access)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _configured(monkeypatch: pytest.MonkeyPatch, stdout: io.StringIO, fmt: str) -> logging.Handler:
    monkeypatch.setattr(sys, "stdout", stdout)
    configure_logging("DEBUG", fmt)
    [handler] = logging.getLogger().handlers
    return handler


@pytest.mark.parametrize(
    ("fmt", "terminal", "json_lines"),
    [("auto", False, True), ("auto", True, False), ("json", True, True), ("text", False, False)],
)
def test_json_goes_to_a_pipe_and_text_to_a_terminal_unless_the_format_is_named(
    root_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    terminal: bool,
    json_lines: bool,
) -> None:
    stdout = _Terminal() if terminal else io.StringIO()
    handler = _configured(monkeypatch, stdout, fmt)

    assert isinstance(handler.formatter, JsonFormatter) is json_lines
    logging.getLogger("cdr_connector.test").info("hello")
    written = stdout.getvalue()
    assert written.endswith("\n") and "hello" in written
    assert written.startswith("{") is json_lines


def test_the_level_is_set_and_the_access_log_is_quiet_below_warnings(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = io.StringIO()
    _configured(monkeypatch, stdout, "json")

    assert root_logger.level == logging.DEBUG
    assert logging.getLogger("aiohttp.access").level == logging.WARNING
    logging.getLogger("aiohttp.access").info("GET /metrics 200")
    assert stdout.getvalue() == ""


def test_configuring_again_replaces_the_handler_rather_than_adding_one(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configured(monkeypatch, io.StringIO(), "json")
    _configured(monkeypatch, io.StringIO(), "text")

    assert len(root_logger.handlers) == 1
