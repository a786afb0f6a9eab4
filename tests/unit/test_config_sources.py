"""`[[sources]]`: several vendor accounts in one process, each with its own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdr_connector.__main__ import main
from cdr_connector.config import Settings, load_settings
from cdr_connector.errors import ConfigError
from cdr_connector.fleet import source_partitions


def account(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "appid": f"app-{name}", "accesskey": f"key-{name}"} | more


def test_each_source_runs_with_its_own_account_and_its_overrides_of_poll() -> None:
    settings = Settings(
        sources=[account("east", poll={"concurrency": 2}), account("west")],
        poll={"interval_seconds": 3, "concurrency": 4},
    )  # type: ignore[arg-type]
    east, west = settings.per_source()
    assert (east.source.name, east.source.appid) == ("east", "app-east")
    assert (east.poll.concurrency, east.poll.interval_seconds) == (2, 3.0)
    assert (west.poll.concurrency, west.poll.interval_seconds) == (4, 3.0)
    assert [s.transactional_id for s in (east, west)] == [
        "cdr-connector-east",
        "cdr-connector-west",
    ]
    assert east.sources == [] and west.sources == []
    assert west.source.accesskey.get_secret_value() == "key-west"


def test_with_several_sources_source_stands_for_the_first() -> None:
    settings = Settings(
        sources=[account("east", poll={"concurrency": 2}), account("west"), account("north")]
    )  # type: ignore[arg-type]
    # Its poll overrides are left out: a source's own settings have no `poll`.
    assert (settings.source.name, settings.source.appid) == ("east", "app-east")


def test_source_is_the_one_source_shorthand() -> None:
    settings = Settings(source=account("only"))  # type: ignore[arg-type]
    (only,) = settings.per_source()
    assert only is settings
    assert only.source.name == "only"


def test_sources_from_a_toml_file_with_a_secret_file_each(tmp_path: Path) -> None:
    secret = tmp_path / "west.key"
    secret.write_text("from-file\n")
    config = tmp_path / "settings.toml"
    config.write_text(
        '[[sources]]\nname = "east"\nappid = "a1"\naccesskey = "k1"\n'
        "[sources.poll]\npage_size = 200\n\n"
        f'[[sources]]\nname = "west"\nappid = "a2"\naccesskey_file = "{secret}"\n'
    )
    east, west = load_settings(config).per_source()
    assert east.poll.page_size == 200 and west.poll.page_size == 1000
    assert west.source.accesskey.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ({"sources": [account("a"), account("a")]}, "sources.name must be unique; repeated: a"),
        (
            {"source": account("a"), "sources": [account("b")]},
            "either [source] or [[sources]], not both",
        ),
        (
            {"sources": [account("a", poll={"concurrency": 0})]},
            "sources[0].poll (a): concurrency",
        ),
        ({"sources": [account("a", poll={"speed": 9})]}, "sources[0].poll (a): speed"),
        (
            {"sources": [account("a"), account("b")], "kafka": {"transactional_id": "x"}},
            "kafka.transactional_id cannot be set with several sources",
        ),
        ({"sources": [account("a")], "fleet": {"session_timeout_seconds": 2}}, "fleet"),
    ],
)
def test_sources_that_cannot_run_side_by_side_are_refused(
    given: dict[str, Any], complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDR_CONFIG", raising=False)
    with pytest.raises(ConfigError) as refused:
        load_settings(**given)
    assert complaint in str(refused.value)


def test_each_source_has_one_partition_of_the_coordination_topic_in_name_order() -> None:
    assert source_partitions(["west", "east", "north"]) == {0: "east", 1: "north", 2: "west"}


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ((), "backfill takes one source: add --source, one of east, west"),
        (("--source", "north"), "--source 'north' is none of the sources: east, west"),
    ],
)
def test_a_backfill_of_several_sources_must_name_one(
    extra: tuple[str, ...],
    complaint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CDR_CONFIG", raising=False)
    config = tmp_path / "settings.toml"
    config.write_text(
        '[[sources]]\nname = "east"\nappid = "a1"\naccesskey = "k1"\n\n'
        '[[sources]]\nname = "west"\nappid = "a2"\naccesskey = "k2"\n'
    )
    window = ["--from", "2026-11-01 00:00:00", "--to", "2026-11-01 01:00:00"]
    assert main(["backfill", "-c", str(config), *window, *extra]) == 2
    assert complaint in capsys.readouterr().err
