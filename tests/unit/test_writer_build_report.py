"""The connector says at start-up whether its bill writer is the compiled build."""

from __future__ import annotations

import logging

import pytest

from cdr_connector import app, bill_writer


@pytest.mark.parametrize(
    ("compiled", "level", "words"),
    [(True, logging.INFO, "compiled (mypyc)"), (False, logging.WARNING, "C compiler")],
)
def test_start_up_names_the_writer_build(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    compiled: bool,
    level: int,
    words: str,
) -> None:
    monkeypatch.setattr(bill_writer, "is_compiled", lambda: compiled)
    with caplog.at_level(logging.INFO, logger="cdr_connector.app"):
        app.report_writer_build()
    (record,) = [r for r in caplog.records if "bill writer" in r.getMessage()]
    assert record.levelno == level
    assert words in record.getMessage()
