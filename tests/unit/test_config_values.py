"""Values at the edges of what the settings accept, read from a TOML file as an operator
writes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdr_connector.config import ENV_PREFIX, Settings, load_settings
from cdr_connector.errors import ConfigError

SOURCE = '[source]\nappid = "a"\naccesskey = "k"\n'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def loaded(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "settings.toml"
    path.write_text(SOURCE + text, encoding="utf-8")
    return load_settings(path)


def test_every_documented_call_method_can_be_filtered_on(tmp_path: Path) -> None:
    for method in range(7):
        text = f"[source.filters]\ncallmethod = {method}\n"
        settings = loaded(tmp_path, text)
        assert settings.source.filters.as_form()["callmethod"] == str(method)
    with pytest.raises(
        ConfigError, match=r"source\.filters\.callmethod: must be at least 0 and at most 6"
    ):
        loaded(tmp_path, "[source.filters]\ncallmethod = 7\n")


def test_partitions_go_up_to_ten_thousand(tmp_path: Path) -> None:
    assert loaded(tmp_path, "[kafka]\npartitions = 10000\n").kafka.partitions == 10_000
    with pytest.raises(
        ConfigError, match=r"kafka\.partitions: must be at least 1 and at most 10000"
    ):
        loaded(tmp_path, "[kafka]\npartitions = 10001\n")


def test_the_log_level_is_info_unless_set(tmp_path: Path) -> None:
    assert loaded(tmp_path, "").log.level == "INFO"
    assert loaded(tmp_path, '[log]\nlevel = "DEBUG"\n').log.level == "DEBUG"
    with pytest.raises(ConfigError, match=r"log\.level"):
        loaded(tmp_path, '[log]\nlevel = "LOUD"\n')
