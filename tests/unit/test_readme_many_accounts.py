"""The settings example of README.md's "Many accounts" is one the connector loads, and means
what the section says of it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cdr_connector.config import ENV_PREFIX, Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
KEY_FILE = re.compile(r'accesskey_file = "([^"]+)"')


def example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Many accounts\n", 1)
    assert len(section) == 2, "README.md has no '## Many accounts' section"
    block = re.search(r"```toml\n(.*?)```", section[1], re.S)
    assert block, "the section has no TOML example"
    return block.group(1)


def load_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The example, its access key files replaced by local ones holding `key-of-<name>`."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    text = example()
    for path in KEY_FILE.findall(text):
        local = tmp_path / Path(path).parent.name
        local.write_text(f"key-of-{Path(path).parent.name}\n", encoding="utf-8")
        text = text.replace(f'"{path}"', f'"{local}"')
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(text, encoding="utf-8")
    return load_settings(settings_file)


def test_the_example_loads_as_two_sources_of_one_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_example(tmp_path, monkeypatch)
    by_name = {each.source.name: each for each in settings.per_source()}
    assert sorted(by_name) == ["acme-bj", "acme-sh"]
    for name, each in by_name.items():
        assert each.transactional_id == f"cdr-connector-{name}"
        assert each.source.accesskey.get_secret_value() == f"key-of-{name}"
    assert settings.fleet.enabled is True
    assert settings.fleet.group_id == "cdr-connector-acme"
    assert settings.fleet.session_timeout_seconds == 10


def test_a_sources_poll_table_overrides_only_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_name = {each.source.name: each for each in load_example(tmp_path, monkeypatch).per_source()}
    assert by_name["acme-bj"].poll.concurrency == 8
    assert by_name["acme-sh"].poll.concurrency == 4
    assert by_name["acme-bj"].poll.interval_seconds == by_name["acme-sh"].poll.interval_seconds == 5
