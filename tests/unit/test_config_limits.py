"""Every number of the settings has an upper bound, and what is out of range, an address that is
none, or a CDR_ variable that is not JSON is one line naming the key (or the variable)."""

from __future__ import annotations

import os
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from cdr_connector.config import ENV_PREFIX, HttpSettings, Settings, load_settings
from cdr_connector.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDR_SOURCE__APPID", "a")
    monkeypatch.setenv("CDR_SOURCE__ACCESSKEY", "k")


def _numeric_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[Any]:
    """(path, annotation, field) of every int or float setting, through nested sections."""
    found: list[Any] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_numeric_fields(annotation, (*prefix, name)))
        elif annotation in (int, float):
            found.append(((*prefix, name), annotation, field))
    return found


NUMERIC = _numeric_fields(Settings)


def _upper_bound(field: Any) -> float | None:
    for item in field.metadata:
        for attribute in ("le", "lt"):
            value = getattr(item, attribute, None)
            if value is not None:
                return float(value)
    return None


def test_the_walk_finds_the_numbers() -> None:
    paths = {".".join(path) for path, _, _ in NUMERIC}
    assert {"poll.lookback_seconds", "kafka.transaction_timeout_seconds", "http.port"} <= paths
    assert "shutdown_timeout_seconds" in paths
    assert "source.filters.callmethod" in paths


@pytest.mark.parametrize("path", [".".join(p) for p, _, _ in NUMERIC])
def test_every_number_has_an_upper_bound(path: str) -> None:
    field = next(f for p, _, f in NUMERIC if ".".join(p) == path)
    bound = _upper_bound(field)
    assert bound is not None, f"{path} has no upper bound"
    # librdkafka takes times in 32-bit milliseconds; none given to it may come near that.
    if path.startswith("kafka.") and path.endswith("_seconds"):
        assert bound * 1000 < 2**31


@pytest.mark.parametrize("path", [".".join(p) for p, _, _ in NUMERIC])
def test_a_number_past_its_bound_is_one_line_naming_the_key_and_the_range(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    annotation = next(a for p, a, _ in NUMERIC if ".".join(p) == path)
    too_big = "inf" if annotation is float else str(10**30)
    monkeypatch.setenv(ENV_PREFIX + path.upper().replace(".", "__"), too_big)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path}: must be " in message
    assert " at most " in message or " less than " in message


@pytest.mark.parametrize("value", ["nan", "-inf", "1e12"])
def test_nan_and_huge_numbers_are_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_POLL__LOOKBACK_SECONDS", value)
    expected = r"poll\.lookback_seconds: must be more than 0 and at most 2592000$"
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_the_range_message_gives_both_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_POLL__CONCURRENCY", "65")
    with pytest.raises(ConfigError, match=r"poll\.concurrency: must be at least 1 and at most 64$"):
        load_settings()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "ops.example.com", "node-1.local"]
)
def test_http_host_takes_addresses_and_host_names(host: str) -> None:
    assert HttpSettings(host=host).host == host


@pytest.mark.parametrize(
    "host",
    ["256.1.1.1", "1.2.3", "", " ", "bad host", "-edge.example", "a..b", "x" * 64, "http://a"],
)
def test_http_host_refuses_what_is_neither(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_HTTP__HOST", host)
    with pytest.raises(ConfigError, match=r"http\.host: must be an IP address or a host name"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDR_POLL", "{bad"),
        ("CDR_KAFKA__CLIENT_CONFIG", '{"a": 1'),
        ("CDR_SOURCE__FILTERS__EXTNUMBER", '["8001",'),
        ("cdr_source__filters", "{"),
    ],
)
def test_malformed_json_in_a_variable_names_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{variable} is not valid JSON" in message
    assert "config file" not in message
    assert "\n" not in message


def test_a_malformed_variable_is_named_even_beside_good_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDR_KAFKA__CLIENT_CONFIG", '{"security.protocol": "SSL"}')
    monkeypatch.setenv("CDR_KAFKA__TOPIC", "{not json, and no need to be}")
    monkeypatch.setenv("CDR_SOURCE__FILTERS__EXTNUMBER", "[8001")
    with pytest.raises(ConfigError, match="CDR_SOURCE__FILTERS__EXTNUMBER is not valid JSON"):
        load_settings()
