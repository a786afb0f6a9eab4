"""Every form of every secret the connector knows, replaced by `***` in text that leaves it.

The secrets: the access key, the vendor's tokens, the password in `source.api_url`, the
proxy's password (`source.proxy_url` or `source.proxy_credentials_file`, or the userinfo of
HTTPS_PROXY / HTTP_PROXY when no proxy is configured), and the `user:password` Basic
credentials aiohttp builds from those two passwords.

The forms: each secret is matched character by character, and each character in any of the
ways it is written: as is, percent-encoded (its UTF-8 bytes as `%XX`, a space also as `+`),
JSON-escaped (`\\"`, PHP's `\\/`, `\\uXXXX`), and inside any number of Python reprs (a
backslash doubled, a quote escaped). So one pattern finds the secret raw, after `quote` with
or without `/` kept, after `quote_plus`, JSON-escaped, repr'd by an error message, and any
mix of those (yarl re-encodes only some characters of a URL). Case is ignored, so lower-case
percent escapes match too.

A cut can end inside a secret: the end of the text, and what precedes each cut marker
(`...`), are checked for the beginning of a secret in any of those forms; when that tail is
`PARTIAL_MIN` characters or longer it is replaced as well. `cut` cuts first and redacts the
cut text. A secret cut shorter than that is left, as too short to tell apart; a secret
shorter than that is replaced only where it stands alone (no letter or digit touching it).

One instance per API client (`VendorApiClient.redactor`); the pipeline (/readyz reasons, the
`cdr.error` header of dead letters) and `check` use the client's, so tokens it learns are
hidden everywhere it is used.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

from yarl import URL

from cdr_connector.config import SourceSettings

MASK = "***"
CUT_MARKER = "..."
PARTIAL_MIN = 8
# Tokens remembered: the current one and a few it replaced (answers to requests made with an
# older token may still be arriving).
TOKENS_REMEMBERED = 4
# A secret's beginning is looked for in at most this many characters before a cut: a
# character can take 12 (`%XX%XX%XX%XX`, or a repr-escaped `\\uXXXX`).
_CHARS_PER_SECRET_CHAR = 12
# A secret shorter than PARTIAL_MIN is replaced only where no letter or digit touches it: as
# part of a word it cannot be told from the word (a test key "k" would mask "ok"), and
# masking every such word would hide nothing a short secret has left to hide.
_STANDING_ALONE = "(?<![0-9A-Za-z]){}(?![0-9A-Za-z])"
_CUT_ESCAPE = re.compile(r"(?:%[0-9A-Fa-f]?|\\+(?:u[0-9A-Fa-f]{0,3})?)\Z")


class Redactor:
    """Replaces the secrets it was given, in every form, with `***`."""

    def __init__(self, *secrets: str) -> None:
        self._fixed: list[str] = []
        self._tokens: deque[str] = deque(maxlen=TOKENS_REMEMBERED)
        self._whole: re.Pattern[str] | None = None
        self._beginning: re.Pattern[str] | None = None
        self._reach = 0
        for secret in secrets:
            self.add(secret)

    @classmethod
    def for_source(cls, source: SourceSettings) -> Redactor:
        """A redactor of every secret the settings of `source` hold or point to."""
        redactor = cls(source.accesskey.get_secret_value())
        redactor.add_userinfo(str(source.api_url))
        credentials = source.proxy_credentials
        if credentials is not None:
            user, password = credentials
            redactor.add_credentials(user, password.get_secret_value())
        if source.proxy_url is None:
            for proxy in getproxies().values():
                redactor.add_userinfo(proxy)
        return redactor

    def add(self, secret: str) -> None:
        if secret and secret not in self._fixed:
            self._fixed.append(secret)
            self._compile()

    def add_token(self, token: str) -> None:
        if token and token not in self._tokens:
            self._tokens.append(token)
            self._compile()

    def add_credentials(self, user: str, password: str) -> None:
        """A password and the Basic credentials (`user:password` in base64) made of it."""
        self.add(password)
        if password:
            for encoding in ("latin-1", "utf-8"):
                try:
                    pair = f"{user}:{password}".encode(encoding)
                except UnicodeEncodeError:
                    continue
                self.add(base64.b64encode(pair).decode("ascii"))

    def add_userinfo(self, url: str) -> None:
        """The password in the user:password part of `url`, if it has one."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            return
        if parsed.password:  # yarl decodes it; a raw password always decodes to some text
            self.add_credentials(parsed.user or "", parsed.password)

    def __call__(self, text: str) -> str:
        if self._whole is None:
            return text
        text = self._whole.sub(MASK, text)
        if CUT_MARKER in text:
            pieces = text.split(CUT_MARKER)
            text = CUT_MARKER.join([*(self._cut_secret(p) for p in pieces[:-1]), pieces[-1]])
        return self._cut_secret(text)

    def cut(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text`, `...` marking a cut, with every secret in
        what remains replaced (a secret the cut went through included)."""
        if len(text) > limit:
            text = text[: max(limit - len(CUT_MARKER), 0)] + CUT_MARKER
        return self(text)

    def _cut_secret(self, text: str) -> str:
        """`text` with its end replaced if that end is the beginning of a secret."""
        if self._beginning is None:
            return text
        # The cut may also have gone through the escape of one character (`%2`, `\\u00`).
        whole = _CUT_ESCAPE.sub("", text)
        found = self._beginning.search(whole, max(len(whole) - self._reach, 0))
        if found is None or len(text) - found.start() < PARTIAL_MIN:
            return text
        return text[: found.start()] + MASK

    def _compile(self) -> None:
        secrets = sorted({*self._fixed, *self._tokens}, key=len, reverse=True)
        units = [[_unit(char) for char in secret] for secret in secrets]
        wholes = [
            "".join(u) if len(secret) >= PARTIAL_MIN else _STANDING_ALONE.format("".join(u))
            for secret, u in zip(secrets, units, strict=True)
        ]
        self._whole = re.compile("|".join(wholes), re.IGNORECASE)
        self._beginning = re.compile(
            "(?:" + "|".join(_beginning_of(u) for u in units) + r")\Z", re.IGNORECASE
        )
        self._reach = max(map(len, secrets)) * _CHARS_PER_SECRET_CHAR


def _unit(char: str) -> str:
    """A regex of `char` in each way it can be written (see the module docstring)."""
    ways = [r"\\+" if char == "\\" else r"\\*" + re.escape(char)]
    ways.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
    if char == " ":
        ways.append(r"\+")
    if not char.isascii():
        # JSON's \uXXXX (a surrogate pair beyond the basic plane).
        code = char.encode("utf-16-be")
        halves = [code[i : i + 2].hex() for i in range(0, len(code), 2)]
        ways.append("".join(rf"\\+u{half}" for half in halves))
    return "(?:" + "|".join(ways) + ")"


def _beginning_of(units: list[str]) -> str:
    """A regex of any beginning of the secret made of `units`, down to its first character."""
    pattern = ""
    for unit in reversed(units[1:]):
        pattern = f"(?:{unit}{pattern})?"
    return units[0] + pattern


def without_userinfo(url: str) -> str:
    """`url` without its user:password part, and otherwise as written (not re-encoded)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
