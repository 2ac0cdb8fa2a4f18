"""wildmatch semantics (lib/wildmatch.c): single and double stars, classes, escapes, anchoring.

The filter tests check these against real rsync through whole rule sets; this table pins
the pattern language itself, including the malformed patterns wildmatch rejects.
"""

from __future__ import annotations

import pytest

from rsyncd_py.protocol.wildmatch import (
    compile_wildcard,
    has_wildcards,
    litmatch_array,
    wildmatch,
    wildmatch_array,
)

CASES = [
    # (matches, text, pattern)
    (True, b"foo", b"foo"),
    (False, b"foo", b"fo"),
    (True, b"", b""),
    (True, b"foo", b"f?o"),
    (False, b"f/o", b"f?o"),
    (True, b"foo.c", b"*.c"),
    (False, b"dir/foo.c", b"*.c"),
    (True, b"dir/foo.c", b"**.c"),
    (True, b"dir/foo.c", b"dir/*"),
    (False, b"dir/sub/foo.c", b"dir/*"),
    (True, b"dir/sub/foo.c", b"dir/**"),
    (True, b"dir/sub/foo.c", b"dir/***"),
    (True, b"a/b/c/d", b"a/**/d"),
    (False, b"a/d", b"a/**/d"),  # "/**/" needs at least "//" around: no zero-dir match
    (True, b"abc", b"[abc]bc"),
    (True, b"xbc", b"[!abc]bc"),
    (True, b"xbc", b"[^abc]bc"),
    (False, b"/bc", b"[!abc]bc"),  # a class never matches "/"
    (True, b"]x", b"[]]x"),
    (True, b"-x", b"[a-]x"),
    (True, b"ex", b"[a-f]x"),
    (False, b"gx", b"[a-f]x"),
    (True, b"5x", b"[[:digit:]]x"),
    (True, b"Ax", b"[[:upper:][:digit:]]x"),
    (False, b"ax", b"[[:upper:]]x"),
    (True, b"\tx", b"[[:space:]]x"),
    (False, b"ax", b"[[:nosuch:]]x"),  # unknown class: matches nothing
    (False, b"ax", b"[ax"),  # unterminated class: matches nothing
    (True, b"[x", b"[[:]x"),  # "[:" without ":]": the class is "[" and ":"
    (True, b":x", b"[[:]x"),
    (True, b"*", b"\\*"),
    (False, b"x", b"\\*"),
    (True, b"a]", b"a\\]"),
    (True, b"\xe9t\xe9", b"?t?"),  # bytes, not characters
    (False, b"x", b"x\\"),  # a trailing backslash cannot match
]


@pytest.mark.parametrize(("matches", "text", "pattern"), CASES)
def test_wildmatch(matches: bool, text: bytes, pattern: bytes) -> None:
    assert wildmatch(pattern, text) is matches


def test_array_modes() -> None:
    assert wildmatch_array(b"b/*.c", b"a/b/x.c", 2)  # the last two elements
    assert not wildmatch_array(b"b/*.c", b"b2/b/x.c/y", 2)
    assert not wildmatch_array(b"a/b/*", b"b/x", 3)  # not enough elements
    assert wildmatch_array(b"x/**", b"a/x/y/z", -1)  # after any slash
    assert not wildmatch_array(b"x/**", b"a/x/y/z", 0)
    assert litmatch_array(b"b/c", b"a/b/c", 2)
    assert not litmatch_array(b"b/c", b"a/bb/c", 2)


def test_helpers() -> None:
    assert has_wildcards(b"a[b") and has_wildcards(b"a?") and not has_wildcards(b"a\\b")
    assert compile_wildcard(b"*.o") is compile_wildcard(b"*.o")  # cached
