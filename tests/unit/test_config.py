"""Settings: one validated object from TOML and CDR_ variables; errors name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdr_connector.__main__ import main
from cdr_connector.config import load_settings

SECRET = "very-s3cret-key"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CDR_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_file_then_environment_which_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[source]\nappid = "a"\naccesskey = "k"\ntimezone = "Europe/Berlin"\n'
        '[source.filters]\nextnumber = ["8001", "8002"]\n'
        '[kafka]\ntopic = "from-file"\n[poll]\nconcurrency = 2\n',
    )
    monkeypatch.setenv("CDR_KAFKA__TOPIC", "from-env")
    settings = load_settings(path)
    assert settings.kafka.topic == "from-env"
    assert settings.poll.concurrency == 2
    assert settings.source.timezone == "Europe/Berlin"
    assert settings.source.filters.as_form()["extnumber"] == "8001,8002"
    assert settings.transactional_id == "cdr-connector-default"


def test_access_key_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "accesskey"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    path = write(tmp_path, f'[source]\nappid = "a"\naccesskey_file = "{secret}"\n')
    settings = load_settings(path)
    assert settings.source.accesskey.get_secret_value() == SECRET
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[source]\nappid = "a"\naccesskey = "k"\ntimezone = "Mars/Olympus"', "source.timezone"),
        ('[source]\nappid = "a"\naccesskey = "k"\n[poll]\npage_size = 1001', "poll.page_size"),
        ('[source]\nappid = "a"\naccesskey = "k"\n[kafka]\ntopik = "x"', "kafka.topik"),
        ('[source]\nappid = "a"\naccesskey = "k"\nname = "bad name!"', "source.name"),
        ('[source]\nappid = "a"', "accesskey is required"),
        ("[poll]\nconcurrency = 2", "source: is required"),
        (
            '[source]\nappid = "a"\naccesskey = "k"\n[kafka.client_config]\nacks = "1"',
            "acks cannot be overridden",
        ),
        (
            '[source]\nappid = "a"\naccesskey = "k"\n[kafka.client_config]\nlogger = "debug"',
            "kafka.client_config: logger cannot be set: librdkafka's log lines go to the "
            "connector's log",
        ),
        (
            '[source]\nappid = "a"\naccesskey = "k"\n[poll]\n'
            "sweep_window_seconds = 100000\nlookback_seconds = 3600",
            "sweep_window_seconds must not exceed lookback_seconds",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_key_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    path = write(tmp_path, toml)
    assert main(["run", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_an_unknown_key_says_it_is_not_a_known_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[source]\nappid = "a"\naccesskey = "k"\nverfy_tls = false\n')
    assert main(["check", "-c", str(path)]) == 2
    assert "source.verfy_tls: is not a known setting" in capsys.readouterr().err


def test_a_secret_in_a_wrong_place_is_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'[source]\nappid = "a"\naccesskey = "k"\nname = "{SECRET}!"\n')
    assert main(["run", "-c", str(path)]) == 2
    assert SECRET not in capsys.readouterr().err


def test_missing_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_malformed_toml_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[source\nappid = ")
    assert main(["run", "-c", str(path)]) == 2
    assert "cannot be read" in capsys.readouterr().err
