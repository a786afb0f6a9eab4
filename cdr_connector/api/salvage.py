"""A second, tolerant reading of an answer that `orjson.loads` rejected as a whole.

One bad bill on a page (a lone surrogate escape, a byte that is not UTF-8, `NaN`, a number
orjson calls infinite such as `1e400`, nesting deeper than orjson's 1024 levels) makes orjson
reject the whole body, and with it the sound bills beside it. `salvage` reads the body again
in pieces: the top-level object, `data`, `data.result` (objects) are split into their members
and `data.result.bills` (an array) into its elements; every other value is given to orjson on
its own. So each piece that comes back is exactly what orjson makes of it, and only the bad
pieces are lost: a bad bill becomes an `UnreadableBill` (to be dead-lettered with its bytes),
any other bad member value is left out, as if absent.

The pieces are found by a byte-level scanner, not a parser: the body may hold bytes that are
not UTF-8, so it is never decoded as a whole, and a bad bill may nest 100,000 levels deep, so
nothing recurses on the body's nesting. Strings are skipped with their escapes, brackets are
paired by kind, and every value must be one lexical unit: a string, a bracketed container, or
a run of bytes that are neither whitespace, nor `"`, nor one of `,:[]{}` (a number, a literal,
or a bad token such as `NaN`). Whatever breaks that structure makes the whole body unreadable
(`None`), because the split could not be trusted: a top-level value that is not an object, a
body cut short, a string that never ends, brackets that do not pair up, a missing value, a key
orjson cannot read, anything else between members (a missing comma, a stray token), or
anything but whitespace after the document (an HTML error page or a PHP warning fails already
at its first byte).

Speed, measured on one core with CPython 3.11 on a 1000-bill page as the simulator serves it
(453 KB; orjson reads it, sound, in 1.0 ms): with one bad bill `salvage` takes 5.6 ms, about
half of it in the regular expression that skips each bill's bytes. A bill nested 100,000
levels deep with its brackets side by side adds 0.6 ms (runs of brackets are one step); with
whitespace or content between the levels every level is a step, 0.26 s in all. A page whose
1000 bills are all bad takes 32 ms, most of it in splitting each bill for its id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from cdr_connector.bill import UnreadableBill, usable_id

# The members split rather than given to orjson whole: the path to the bills.
BILLS_PATH: Final = ("data", "result", "bills")
# orjson's messages are one line; this bounds what a dead-letter header has to carry.
REASON_LIMIT: Final = 120

_STRING: Final = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
# A JSON string with its escapes; a backslash escapes any byte, orjson judges the escape.
_STRING_RE: Final = re.compile(_STRING, re.DOTALL)
# Inside a container, everything up to the next bracket (or the `"` of a string that never
# ends): commas and strings are of no interest until the container closes.
_INSIDE_RE: Final = re.compile(rb'[^"\[\]{}]*+(?:' + _STRING + rb'[^"\[\]{}]*+)*+', re.DOTALL)
# A value that is neither a string nor a container: a number, a literal, or a bad token.
_TOKEN_RE: Final = re.compile(rb'[^ \t\n\r,:\[\]{}"]++')
_WHITESPACE_RE: Final = re.compile(rb"[ \t\n\r]*+")
# A member's key, with the whitespace and the colon after it; and what follows an item. They
# take the whitespace around them, as skipping it apart costs more than the rest of a member.
_KEY_RE: Final = re.compile(rb"(" + _STRING + rb")[ \t\n\r]*+:[ \t\n\r]*+", re.DOTALL)
_SEPARATOR_RE: Final = re.compile(rb"[ \t\n\r]*+([,\]}])[ \t\n\r]*+")
# Brackets are pushed and popped by the run, so that a bill nested 100,000 levels deep costs
# a few steps, not 200,000.
_OPENERS_RE: Final = re.compile(rb"[\[{]++")
_CLOSERS_RE: Final = re.compile(rb"[\]}]++")
_CLOSER_OF: Final = bytes.maketrans(b"[{", b"]}")
_QUOTE: Final = ord('"')

# A member value orjson rejects: left out of its object.
_ABSENT: Final = object()


class _UnreadableError(Exception):
    """The body's structure breaks the rules in the module docstring: nothing can be salvaged
    from it, since where one piece ends and the next begins is no longer known."""


def salvage(body: bytes) -> Any | None:
    """The document in `body` as nested dicts and lists, as orjson would give it, with every
    unreadable bill of `data.result.bills` as an `UnreadableBill` and every other unreadable
    member value left out; None when the body's structure cannot be read (see the module)."""
    try:
        start = _skip_whitespace(body, 0)
        if not body.startswith(b"{", start):
            return None
        document, end = _object(body, start, BILLS_PATH)
        if _skip_whitespace(body, end) != len(body):
            return None
        return document
    except _UnreadableError:
        return None


# --- reading the pieces -----------------------------------------------------------------

# How `_members` reads the value that starts at a position, given the member's key: the value
# (whatever the caller wants to keep of it) and the position after it.
_ValueReader = Callable[[int, str], tuple[Any, int]]


def _object(body: bytes, start: int, path: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """The object at `start`, read member by member, and the position after it. The member
    named `path[0]` is read further along `path`, in the same pass over the body."""

    def read(value_start: int, key: str) -> tuple[Any, int]:
        if path and key == path[0]:
            return _along(body, value_start, path[1:])
        return _parsed(body, value_start)

    members, end = _members(body, start, read)
    # A later duplicate wins, as with orjson; a left-out one does not hide an earlier one.
    return {key: value for key, value in members if value is not _ABSENT}, end


def _along(body: bytes, start: int, rest: tuple[str, ...]) -> tuple[Any, int]:
    """A member on the path to the bills: split if it has the expected shape, else parsed
    whole (a `data` that is null, say, is for the client to judge)."""
    if rest and body.startswith(b"{", start):
        return _object(body, start, rest)
    if not rest and body.startswith(b"[", start):
        elements, end = _elements(body, start)
        return [_bill(body[first:last]) for first, last in elements], end
    return _parsed(body, start)


def _parsed(body: bytes, start: int) -> tuple[Any, int]:
    """The value at `start` as orjson reads it (`_ABSENT` if it cannot), and its end."""
    end = _value_end(body, start)
    try:
        return orjson.loads(body[start:end]), end
    except orjson.JSONDecodeError:
        return _ABSENT, end


def _bill(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return UnreadableBill(raw=raw, reason=str(exc)[:REASON_LIMIT], id=_id_of(raw))


def _id_of(raw: bytes) -> int | None:
    """The usable id of a bill orjson rejected, when its `id` member can be read on its own
    (the last one, as orjson would keep it)."""
    if not raw.startswith(b"{"):
        return None

    def read(value_start: int, key: str) -> tuple[Any, int]:
        if key == "id":
            return _parsed(raw, value_start)
        return _ABSENT, _value_end(raw, value_start)

    try:
        members = _members(raw, 0, read)[0]
    except _UnreadableError:
        return None
    ids = [value for key, value in members if key == "id"]
    return None if not ids or ids[-1] is _ABSENT else usable_id(ids[-1])


# --- the scanner ------------------------------------------------------------------------


def _members(body: bytes, start: int, read: _ValueReader) -> tuple[list[tuple[str, Any]], int]:
    """The members of the object whose `{` is at `start`, each value as `read` gives it, and
    the position after the object's `}`."""
    members: list[tuple[str, Any]] = []
    position = _skip_whitespace(body, start + 1)
    if body.startswith(b"}", position):
        return members, position + 1
    while True:
        key = _KEY_RE.match(body, position)
        if key is None:
            raise _UnreadableError  # not a key, one that never ends, or no colon after it
        name = _key(key[1])
        value, value_end = read(key.end(), name)
        members.append((name, value))
        position, closed = _after_item(body, value_end, b"}")
        if closed:
            return members, position


def _elements(body: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """The elements of the array whose `[` is at `start` as (start, end) spans, and the
    position after its `]`."""
    elements: list[tuple[int, int]] = []
    position = _skip_whitespace(body, start + 1)
    if body.startswith(b"]", position):
        return elements, position + 1
    while True:
        end = _value_end(body, position)
        elements.append((position, end))
        position, closed = _after_item(body, end, b"]")
        if closed:
            return elements, position


def _key(raw: bytes) -> str:
    try:
        key: str = orjson.loads(raw)  # a whole JSON string, if anything
    except orjson.JSONDecodeError:
        raise _UnreadableError from None
    return key


def _after_item(body: bytes, end: int, closer: bytes) -> tuple[int, bool]:
    """Past the `,` after an item (False) or past the container's closer (True), and past
    the whitespace after either."""
    separator = _SEPARATOR_RE.match(body, end)
    if separator is None or separator[1] not in (b",", closer):
        raise _UnreadableError
    return separator.end(), separator[1] == closer


def _value_end(body: bytes, start: int) -> int:
    """The end of the one lexical unit that must start at `start`."""
    first = body[start : start + 1]
    if first == b'"':
        return _string_end(body, start)
    if first in (b"{", b"["):
        return _container_end(body, start)
    token = _TOKEN_RE.match(body, start)
    if token is None:
        raise _UnreadableError  # no value at all: `,,`, `:,`, a trailing comma, the end
    return token.end()


def _string_end(body: bytes, start: int) -> int:
    string = _STRING_RE.match(body, start)
    if string is None:
        raise _UnreadableError  # not a string, or one that never ends
    return string.end()


def _container_end(body: bytes, start: int) -> int:
    """The position after the bracket that closes the one at `start`, found with a stack of
    the closers still expected instead of recursion."""
    expected = bytearray()
    position, size = start, len(body)
    while position < size:
        byte = body[position]
        if byte in b"[{":
            run_end = _skip(_OPENERS_RE, body, position)
            expected += body[position:run_end].translate(_CLOSER_OF)
            position = run_end
        elif byte == _QUOTE:
            raise _UnreadableError  # a string that never ends
        else:
            position = _close(expected, body, position)
            if not expected:
                return position
        position = _skip(_INSIDE_RE, body, position)
    raise _UnreadableError  # cut short


def _close(expected: bytearray, body: bytes, position: int) -> int:
    """Takes the run of closing brackets at `position` off the end of `expected`, up to the
    last one expected, and returns the position after those taken."""
    run_end = _skip(_CLOSERS_RE, body, position)
    count = min(run_end - position, len(expected))
    remaining = len(expected) - count
    if expected[remaining:][::-1] != body[position : position + count]:
        raise _UnreadableError  # brackets that do not pair up
    del expected[remaining:]
    return position + count


def _skip_whitespace(body: bytes, position: int) -> int:
    return _skip(_WHITESPACE_RE, body, position)


def _skip(pattern: re.Pattern[bytes], body: bytes, position: int) -> int:
    found = pattern.match(body, position)
    return position if found is None else found.end()
