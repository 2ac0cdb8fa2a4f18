r"""rsync's wildcard matching (`lib/wildmatch.c`), compiled to Python regular expressions.

The pattern language, on bytes:

- ``*`` matches any run of bytes except ``/``; ``**`` (two or more stars) matches
  anything, ``/`` included;
- ``?`` matches one byte except ``/``;
- ``[...]`` is a class: ``!`` or ``^`` first negates it, ``a-z`` ranges, ``[:alpha:]``
  and the other POSIX names (ASCII), ``\\`` escapes, a ``]`` first is literal; a class
  never matches ``/``; an unterminated class or an unknown ``[:name:]`` makes the whole
  pattern match nothing (wildmatch's ABORT_ALL);
- ``\\x`` matches ``x``; anything else matches itself.

The whole text must match. `wildmatch_array` adds rsync's anchoring modes: match at the
start only, at the start or after any ``/``, or against the last N path elements.
wildmatch's ABORT_* results only prune its backtracking, so a regex full match gives
the same answers.
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["compile_wildcard", "has_wildcards", "litmatch_array", "wildmatch", "wildmatch_array"]

_NEVER: Final = re.compile(rb"(?!)")

_CLASSES: Final[dict[bytes, frozenset[int]]] = {
    b"alnum": frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"alpha": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(0x20), 0x7F]),
    b"digit": frozenset(b"0123456789"),
    b"graph": frozenset(range(0x21, 0x7F)),
    b"lower": frozenset(b"abcdefghijklmnopqrstuvwxyz"),
    b"print": frozenset(range(0x20, 0x7F)),
    b"punct": frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    b"space": frozenset(b" \t\n\v\f\r"),
    b"upper": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"xdigit": frozenset(b"0123456789ABCDEFabcdef"),
}
_SLASH: Final = ord("/")


class _Abort(Exception):
    """The pattern is malformed: wildmatch answers "no match" for any text."""


def has_wildcards(pattern: bytes) -> bool:
    """Whether rsync treats `pattern` as a wildcard pattern (it has ``*``, ``[`` or ``?``)."""
    return any(c in pattern for c in b"*[?")


def _class_members(pattern: bytes, pos: int) -> tuple[frozenset[int], int]:
    """Parse the class starting after ``[`` at `pos`; return its bytes and the end index."""
    members: set[int] = set()
    negated = pos < len(pattern) and pattern[pos] in b"!^"
    if negated:
        pos += 1
    previous = 0  # the last literal byte, for a following "-" range
    first = True
    while True:
        if pos >= len(pattern):
            raise _Abort
        ch = pattern[pos]
        if ch == ord("]") and not first:
            break
        first = False
        if ch == ord("\\"):
            pos += 1
            if pos >= len(pattern):
                raise _Abort
            ch = pattern[pos]
            members.add(ch)
            previous = ch
        elif (
            ch == ord("-")
            and previous
            and pos + 1 < len(pattern)
            and pattern[pos + 1] != ord("]")
        ):
            pos += 1
            end = pattern[pos]
            if end == ord("\\"):
                pos += 1
                if pos >= len(pattern):
                    raise _Abort
                end = pattern[pos]
            members.update(range(previous, end + 1))
            previous = 0
        elif ch == ord("[") and pattern[pos + 1 : pos + 2] == b":":
            close = pattern.find(b"]", pos + 2)
            if close < 0:
                raise _Abort
            if pattern[close - 1] != ord(":") or close - 1 < pos + 2:
                members.add(ch)  # no ":]": an ordinary "["
                previous = ch
            else:
                name = pattern[pos + 2 : close - 1]
                if name not in _CLASSES:
                    raise _Abort
                members |= _CLASSES[name]
                previous = 0
                pos = close
        else:
            members.add(ch)
            previous = ch
        pos += 1
    chosen = set(range(256)) - members if negated else members
    chosen.discard(_SLASH)
    return frozenset(chosen), pos


def _translate(pattern: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(pattern):
        ch = pattern[pos]
        if ch == ord("*"):
            end = pos
            while end < len(pattern) and pattern[end] == ord("*"):
                end += 1
            out += rb".*" if end - pos > 1 else rb"[^/]*"
            pos = end
            continue
        if ch == ord("?"):
            out += rb"[^/]"
        elif ch == ord("["):
            members, pos = _class_members(pattern, pos + 1)
            if not members:
                raise _Abort
            out += b"[" + b"".join(re.escape(bytes([b])) for b in sorted(members)) + b"]"
        elif ch == ord("\\"):
            pos += 1
            if pos >= len(pattern):
                raise _Abort  # a trailing backslash cannot match
            out += re.escape(pattern[pos : pos + 1])
        else:
            out += re.escape(bytes([ch]))
        pos += 1
    return bytes(out)


@functools.lru_cache(maxsize=4096)
def compile_wildcard(pattern: bytes) -> re.Pattern[bytes]:
    """Compile a wildmatch pattern to a regex for `fullmatch` (cached)."""
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except _Abort:
        return _NEVER


def wildmatch(pattern: bytes, text: bytes) -> bool:
    """`wildmatch(pattern, text)`: whether the whole `text` matches."""
    return compile_wildcard(pattern).fullmatch(text) is not None


def _candidates(text: bytes, where: int) -> list[bytes]:
    """Return the texts wildmatch_array tries.

    The whole text (where 0), also every suffix after a "/" (< 0), or the last `where`
    path elements (> 0).
    """
    if where > 0:
        parts = text.split(b"/")
        return [b"/".join(parts[-where:])] if len(parts) >= where else []
    if where == 0:
        return [text]
    return [text] + [text[i + 1 :] for i, c in enumerate(text) if c == _SLASH]


def wildmatch_array(pattern: bytes, text: bytes, where: int) -> bool:
    """`lib/wildmatch.c:wildmatch_array` on rsync's strings, joined into `text`.

    Matches at the start (`where` 0), also after any slash (< 0), or the trailing
    `where` path elements (> 0).
    """
    regex = compile_wildcard(pattern)
    return any(regex.fullmatch(t) for t in _candidates(text, where))


def litmatch_array(literal: bytes, text: bytes, where: int) -> bool:
    """`litmatch_array`: like `wildmatch_array` for a pattern without wildcards."""
    return any(t == literal for t in _candidates(text, where))
