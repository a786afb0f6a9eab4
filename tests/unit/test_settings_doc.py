"""The README's settings table is generated from the settings model and kept equal to it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic.fields import FieldInfo

from cdr_connector import settings_doc
from cdr_connector.config import Settings
from cdr_connector.errors import ConfigError
from cdr_connector.settings_doc import (
    END_MARKER,
    README,
    START_MARKER,
    Setting,
    default_text,
    row,
    settings,
    type_name,
    with_table,
)


def test_the_readme_table_is_the_one_the_model_generates() -> None:
    readme = README.read_text(encoding="utf-8")
    assert with_table(readme) == readme, "stale: run python -m cdr_connector.settings_doc"


def test_the_table_has_a_row_per_setting_and_no_other() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]
    keys = [line.split("|")[1].strip().strip("`") for line in section.strip().splitlines()[2:]]
    assert keys == [setting.key for setting in settings()]
    assert "source.token_lifetime_seconds" in keys
    assert "kafka.queue_max_kbytes" in keys
    assert "log.format" in keys


def test_every_setting_has_a_description() -> None:
    missing = [s.key for s in settings() if not s.field.description]
    assert missing == []


def test_a_setting_without_a_description_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"poll\.example has no description"):
        row(Setting("poll.example", FieldInfo(annotation=int, default=1)))


def test_a_changed_default_makes_the_readme_stale() -> None:
    readme = README.read_text(encoding="utf-8")
    edited = readme.replace(
        "| `poll.concurrency` | integer | `4` |", "| `poll.concurrency` | integer | `8` |"
    )
    assert edited != readme
    assert with_table(edited) == readme


def test_a_row_dropped_from_the_readme_comes_back() -> None:
    readme = README.read_text(encoding="utf-8")
    lines = readme.splitlines(keepends=True)
    edited = "".join(line for line in lines if not line.startswith("| `source.token_lifetime"))
    assert edited != readme
    assert with_table(edited) == readme


def test_check_mode_reports_a_stale_table_and_the_rewrite_fixes_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START_MARKER}\n| old |\n{END_MARKER}\n\nafter\n", encoding="utf-8")
    assert settings_doc.main(["--readme", str(readme), "--check"]) == 1
    assert "| old |" in readme.read_text(encoding="utf-8"), "--check changes nothing"
    assert settings_doc.main(["--readme", str(readme)]) == 0
    assert settings_doc.main(["--readme", str(readme), "--check"]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# x\n\n") and text.endswith(f"{END_MARKER}\n\nafter\n")
    assert "| `shutdown_timeout_seconds` | number | `30` | more than 0 and at most 3600 |" in text


def test_missing_markers_are_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no table here\n", encoding="utf-8")
    assert settings_doc.main(["--readme", str(readme), "--check"]) == 2
    with pytest.raises(ConfigError, match="lacks the markers"):
        with_table("no table here\n")


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, "integer"),
        (float | None, "number"),
        (tuple[str, ...], "list of strings"),
        (dict[str, str], "map of strings"),
        (Literal["a", "b"], "one of `a`, `b`"),
        (Literal[1, 2], "one of `1`, `2`"),
    ],
)
def test_type_names(annotation: object, expected: str) -> None:
    assert type_name(annotation) == expected


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="no name for the type"):
        type_name(complex)


def test_defaults_as_a_reader_writes_them() -> None:
    fields = {s.key: s.field for s in settings()}
    assert default_text(fields["source.request_timeout_seconds"]) == "`30`"
    assert default_text(fields["poll.retry_initial_seconds"]) == "`0.5`"
    assert default_text(fields["source.verify_tls"]) == "`true`"
    assert default_text(fields["kafka.transactional_id"]) == "none"
    assert default_text(fields["kafka.client_config"]) == "empty"
    assert default_text(fields["source.filters.extnumber"]) == "empty"
    assert default_text(FieldInfo(annotation=tuple[str, ...], default=("8001", "8002"))) == (
        '`["8001", "8002"]`'
    )
    assert default_text(Settings.model_fields["source"]) == "required"
