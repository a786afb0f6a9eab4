"""Secrets in the rarer forms and places: characters beyond ASCII, passwords from the
environment's proxy, URLs without one, empty secrets, and the bounds of `cut`."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from cdr_connector.config import SourceSettings
from cdr_connector.redaction import CUT_MARKER, MASK, Redactor


def test_a_json_escaped_secret_beyond_ascii_is_replaced() -> None:
    for secret in ("pässwörd-1234", "pass😀word-1234"):
        escaped = json.dumps(secret)[1:-1]
        assert "\\u" in escaped
        assert Redactor(secret)(f'{{"key": "{escaped}"}}') == f'{{"key": "{MASK}"}}', secret


def test_basic_credentials_of_a_password_latin_1_cannot_encode_are_replaced() -> None:
    redactor = Redactor()
    redactor.add_credentials("egress", "pa55-€uro-word")
    utf8 = base64.b64encode("egress:pa55-€uro-word".encode()).decode()
    assert redactor(f"Authorization: Basic {utf8}") == f"Authorization: Basic {MASK}"
    assert redactor("pa55-€uro-word") == MASK


def test_a_url_without_a_password_adds_no_secret() -> None:
    redactor = Redactor()
    for url in ("http://vendor.example/api", "http://user@vendor.example/", "not a url"):
        redactor.add_userinfo(url)
    assert redactor("http://user@vendor.example/ ok") == "http://user@vendor.example/ ok"


def test_an_empty_secret_is_ignored() -> None:
    assert Redactor("")("text stays as it is") == "text stays as it is"
    redactor = Redactor("", "long-secret-value")
    assert redactor("a long-secret-value b") == f"a {MASK} b"


def test_the_password_of_the_environments_proxy_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "http://egress:env-pr0xy-pass@proxy.example:3128")
    source = SourceSettings(appid="appid", accesskey="access-key-value")
    redactor = Redactor.for_source(source)
    assert redactor("proxy said env-pr0xy-pass") == f"proxy said {MASK}"
    basic = base64.b64encode(b"egress:env-pr0xy-pass").decode()
    assert redactor(f"Basic {basic}") == f"Basic {MASK}"


def test_a_text_of_exactly_the_limit_is_not_cut() -> None:
    redactor = Redactor("long-secret-value")
    assert redactor.cut("x" * 10, 10) == "x" * 10
    assert redactor.cut("x" * 11, 10) == "x" * 7 + CUT_MARKER


def test_a_limit_shorter_than_the_marker_leaves_only_the_marker() -> None:
    redactor = Redactor("long-secret-value")
    for limit in range(len(CUT_MARKER)):
        assert redactor.cut("abcdefgh", limit) == CUT_MARKER, limit


def test_a_secret_that_extends_another_is_replaced_whole() -> None:
    redactor = Redactor("password-1", "password-1234")
    assert redactor("x password-1234 y") == f"x {MASK} y"
    assert redactor("x password-1 y") == f"x {MASK} y"


def test_a_text_that_begins_with_a_cut_secret_shows_none_of_it() -> None:
    redactor = Redactor("long-secret-value")
    assert redactor.cut("long-secret-value and more", 11) == MASK + CUT_MARKER
    assert redactor("long-secr") == MASK


def test_a_cut_through_a_long_percent_encoded_secret_beyond_ascii_shows_none_of_it() -> None:
    # Each character takes 12 characters encoded: the longest form the cut is searched for.
    secret = "".join(chr(0x1F600 + i) for i in range(13))
    encoded = quote(secret, safe="")
    assert len(encoded) == 13 * 12
    assert Redactor(secret).cut(encoded, 12 * 12 + len(CUT_MARKER)) == MASK + CUT_MARKER


def test_an_empty_or_repeated_token_keeps_the_tokens_remembered() -> None:
    redactor = Redactor()
    tokens = [f"token-number-{i:04d}" for i in range(4)]
    for token in tokens:
        redactor.add_token(token)
    redactor.add_token("")
    redactor.add_token(tokens[-1])
    assert redactor(" ".join(tokens)) == " ".join([MASK] * 4)
