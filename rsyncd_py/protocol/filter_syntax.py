"""Filter rule syntax (`exclude.c:parse_rule_tok`, `add_rule`, `recv_filter_list`).

A rule is ``<kind>[<modifiers>] <pattern>``: kinds ``+ - : . P R H S !`` or their words
(``include``, ``dir-merge``, ...), modifiers ``/ ! C n w e x s r p`` and ``+ -`` on merge
rules; below protocol 29 only ``+ ``/``- `` prefixes exist. `parse_rules` turns the
client's wire records into `FilterRule` values in list order, applying the list-level
effects rsync applies while parsing (``!`` clears the list, ``e`` adds an exclude of the
merge file, ``--delete-excluded`` makes plain rules sender-only, a trailing ``/`` marks a
directory-only rule, ``/`` in a per-directory merge file anchors at that directory).
Matching lives in filters.py.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .buffer import ReceiveBuffer
from .errors import ExitCode, RemoteProtocolError

__all__ = [
    "CVS_DEFAULT_IGNORES",
    "FilterRule",
    "RuleBuilder",
    "RuleFlag",
    "option_rules",
    "parse_rules",
    "read_filter_list",
    "server_filter_rules",
]

BIGPATHBUFLEN: Final = 4096 + 1024
# the default --cvs-exclude patterns (rsync.1 "--cvs-exclude")
CVS_DEFAULT_IGNORES: Final = (
    b"RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS .make.state .nse_depinfo *~ #* .#* ,* "
    b"_$* *$ *.old *.bak *.BAK *.orig *.rej .del-* *.a *.olb *.o *.obj *.so *.exe *.Z *.elc "
    b"*.ln core .svn/ .git/ .hg/ .bzr/"
)
_INT32 = struct.Struct("<i")
_WORDS: Final = {
    b"clear": ord("!"),
    b"dir-merge": ord(":"),
    b"exclude": ord("-"),
    b"hide": ord("H"),
    b"include": ord("+"),
    b"merge": ord("."),
    b"protect": ord("P"),
    b"risk": ord("R"),
    b"show": ord("S"),
}
_SPACE: Final = frozenset(b" \t\n\v\f\r")


class RuleFlag(enum.IntFlag):
    """rsync's FILTRULE_* bits that this implementation uses."""

    INCLUDE = 1 << 5
    DIRECTORY = 1 << 6
    ABS_PATH = 1 << 4
    WORD_SPLIT = 1 << 7
    NO_INHERIT = 1 << 8
    NO_PREFIXES = 1 << 9
    MERGE_FILE = 1 << 10
    PERDIR_MERGE = 1 << 11
    EXCLUDE_SELF = 1 << 12
    NEGATE = 1 << 14
    CVS_IGNORE = 1 << 15
    SENDER_SIDE = 1 << 16
    RECEIVER_SIDE = 1 << 17
    CLEAR_LIST = 1 << 18
    PERISHABLE = 1 << 19
    XATTR = 1 << 20


SIDES: Final = RuleFlag.SENDER_SIDE | RuleFlag.RECEIVER_SIDE
# what a rule inherits from the merge rule whose file it comes from
FROM_CONTAINER: Final = (
    RuleFlag.ABS_PATH
    | RuleFlag.INCLUDE
    | RuleFlag.DIRECTORY
    | RuleFlag.NEGATE
    | RuleFlag.PERISHABLE
)
NO_FLAGS: Final = RuleFlag(0)


@dataclass(frozen=True, slots=True, eq=False)
class FilterRule:
    """One parsed rule; `pattern` as `add_rule` stores it (trailing "/" removed).

    Rules compare by identity: two dir-merge rules with the same text are still two.
    """

    pattern: bytes
    flags: RuleFlag

    @property
    def is_include(self) -> bool:
        return bool(self.flags & RuleFlag.INCLUDE)

    def applies_to(self, side: RuleFlag) -> bool:
        """Whether the rule applies on `side` (a rule naming no side applies to both)."""
        return not self.flags & SIDES or bool(self.flags & side)


def rule_error(message: str, text: bytes) -> RemoteProtocolError:
    """`exclude.c:filter_rule_err`: a bad rule ends the session with RERR_SYNTAX."""
    shown = text.decode("utf-8", "backslashreplace")
    return RemoteProtocolError(f"{message}: {shown}", ExitCode.RERR_SYNTAX)


def read_filter_list(buf: ReceiveBuffer, protocol: int) -> list[bytes] | None:
    """`recv_filter_list`'s records: int32 length + text, until a 0 length.

    Returns the rule texts, or None (consuming nothing) until the whole list is there.
    """
    del protocol  # the records are the same for every protocol
    rules: list[bytes] = []
    offset = 0
    while True:
        header = buf.peek(4, offset)
        if header is None:
            return None
        (length,) = _INT32.unpack(header)
        offset += 4
        if length == 0:
            buf.skip(offset)
            return rules
        if not 0 < length < BIGPATHBUFLEN:
            raise RemoteProtocolError(f"filter rule length {length} out of range")
        text = buf.peek(length, offset)
        if text is None:
            return None
        rules.append(text)
        offset += length


def _split_rule(text: bytes, template: RuleFlag, old_prefixes: bool) -> tuple[RuleFlag, bytes]:
    """`parse_rule_tok` for one token: returns (flags, pattern)."""
    flags = template & FROM_CONTAINER
    pos = 0
    if template & RuleFlag.NO_PREFIXES:
        if text.startswith(b"!") and template & RuleFlag.CVS_IGNORE:
            flags |= RuleFlag.CLEAR_LIST
    elif old_prefixes:
        if text.startswith(b"- "):
            flags &= ~RuleFlag.INCLUDE
            pos = 2
        elif text.startswith(b"+ "):
            flags |= RuleFlag.INCLUDE
            pos = 2
        elif text.startswith(b"!"):
            flags |= RuleFlag.CLEAR_LIST
    else:
        flags, pos = _parse_prefix(text, flags)
    if template & SIDES:
        if flags & SIDES:
            raise rule_error("specified-side merge file contains specified-side filter", text)
        flags |= template & SIDES
    pattern = text[pos:]
    if flags & RuleFlag.CLEAR_LIST:
        if not template & RuleFlag.NO_PREFIXES and not old_prefixes and pattern:
            raise rule_error("'!' rule has trailing characters", text)
        if len(pattern) > 1:
            flags &= ~RuleFlag.CLEAR_LIST
    elif not pattern and not flags & RuleFlag.CVS_IGNORE:
        raise rule_error("unexpected end of filter rule", text)
    return flags, pattern


def _parse_prefix(text: bytes, flags: RuleFlag) -> tuple[RuleFlag, int]:
    """The rule kind and modifiers of new-style syntax; returns flags and pattern start."""
    pos = 0
    kind = None
    for word, letter in _WORDS.items():
        if text.startswith(word):
            kind, pos = letter, len(word) - 1
            break
    if kind is None:
        kind = text[0] if text else 0
        if text[1:2] == b",":
            pos = 1
    side_given = False
    if kind == ord(":"):
        flags |= RuleFlag.PERDIR_MERGE | RuleFlag.MERGE_FILE
    elif kind == ord("."):
        flags |= RuleFlag.MERGE_FILE
    elif kind == ord("+"):
        flags |= RuleFlag.INCLUDE
    elif kind in (ord("S"), ord("H")):
        flags |= RuleFlag.SENDER_SIDE | (RuleFlag.INCLUDE if kind == ord("S") else 0)
        side_given = True
    elif kind in (ord("R"), ord("P")):
        flags |= RuleFlag.RECEIVER_SIDE | (RuleFlag.INCLUDE if kind == ord("R") else 0)
        side_given = True
    elif kind == ord("!"):
        flags |= RuleFlag.CLEAR_LIST
    elif kind != ord("-"):
        raise rule_error("Unknown filter rule", text)
    if kind != ord("!"):
        pos += 1
        while pos < len(text) and text[pos] not in b" _":
            flags = _modifier(text, pos, flags, side_given)
            pos += 1
    if pos < len(text):
        pos += 1  # the separator
    return flags, pos


def _modifier(text: bytes, pos: int, flags: RuleFlag, side_given: bool) -> RuleFlag:
    letter = chr(text[pos])
    merge = bool(flags & RuleFlag.MERGE_FILE)
    if letter in "-+" and merge and not flags & RuleFlag.NO_PREFIXES:
        return flags | RuleFlag.NO_PREFIXES | (RuleFlag.INCLUDE if letter == "+" else 0)
    if letter == "/":
        return flags | RuleFlag.ABS_PATH
    if letter == "!" and not merge:
        return flags | RuleFlag.NEGATE
    if letter == "C" and not flags & RuleFlag.NO_PREFIXES and not side_given:
        return flags | (
            RuleFlag.NO_PREFIXES | RuleFlag.WORD_SPLIT | RuleFlag.NO_INHERIT | RuleFlag.CVS_IGNORE
        )
    if letter == "e" and merge:
        return flags | RuleFlag.EXCLUDE_SELF
    if letter == "n" and merge:
        return flags | RuleFlag.NO_INHERIT
    if letter == "w" and merge:
        return flags | RuleFlag.WORD_SPLIT
    if letter == "p":
        return flags | RuleFlag.PERISHABLE
    if letter == "x":
        return flags | RuleFlag.XATTR
    if letter == "r" and not side_given:
        return flags | RuleFlag.RECEIVER_SIDE
    if letter == "s" and not side_given:
        return flags | RuleFlag.SENDER_SIDE
    shown = text.decode("utf-8", "backslashreplace")
    raise RemoteProtocolError(
        f"invalid modifier '{letter}' at position {pos} in filter rule: {shown}",
        ExitCode.RERR_SYNTAX,
    )


def _tokens(text: bytes, word_split: bool) -> list[bytes]:
    """`parse_filter_str` splits a word-split string at whitespace; otherwise one rule."""
    if not word_split:
        return [text] if text else []
    return text.split()


class RuleBuilder:
    """`parse_filter_str` + `add_rule` into one list, with rsync's list-level effects."""

    def __init__(
        self,
        rules: list[FilterRule],
        *,
        template: RuleFlag = NO_FLAGS,
        old_prefixes: bool = False,
        delete_excluded: bool = False,
        anchor_dir: bytes | None = None,
    ) -> None:
        self.rules = rules
        self.template = template
        self.old_prefixes = old_prefixes
        self.delete_excluded = delete_excluded
        self.anchor_dir = anchor_dir  # set for per-dir merge files: "/" anchors here
        self.cleared = False  # a "!" rule emptied the list (and what it inherits)

    def add_text(self, text: bytes) -> None:
        for token in _tokens(text, bool(self.template & RuleFlag.WORD_SPLIT)):
            self._add_token(token)

    def _add_token(self, token: bytes) -> None:
        flags, pattern = _split_rule(token, self.template, self.old_prefixes)
        if self.delete_excluded and not flags & (SIDES | RuleFlag.MERGE_FILE):
            flags |= RuleFlag.SENDER_SIDE  # --delete-excluded: only the sender excludes
        if flags & RuleFlag.CLEAR_LIST:
            self.rules.clear()
            self.cleared = True
            return
        if flags & RuleFlag.MERGE_FILE:
            if not pattern:
                pattern = b".cvsignore"
            if not flags & RuleFlag.PERDIR_MERGE:
                raise rule_error("merge-file rules are not accepted by this server", token)
            if flags & RuleFlag.EXCLUDE_SELF:
                self._add(pattern.rsplit(b"/", 1)[-1], RuleFlag(0))
                flags &= ~RuleFlag.EXCLUDE_SELF
        self._add(pattern, flags)  # a "-C" rule is matched against the CVS defaults

    def _add(self, pattern: bytes, flags: RuleFlag) -> None:
        """`add_rule`: directory suffix, anchoring inside merge files, dedup of dir-merges."""
        if len(pattern) > 1 and pattern.endswith(b"/"):
            pattern = pattern[:-1]
            flags |= RuleFlag.DIRECTORY
        if (
            self.anchor_dir is not None
            and pattern.startswith(b"/")
            and not flags & (RuleFlag.ABS_PATH | RuleFlag.MERGE_FILE)
        ):
            prefix = b"/" + self.anchor_dir if self.anchor_dir not in (b"", b".") else b""
            pattern = prefix + pattern
        self.rules.append(FilterRule(pattern, flags))


def parse_rules(
    rules: Iterable[bytes], protocol: int, *, delete_excluded: bool = False
) -> list[FilterRule]:
    """Parse the client's wire rules (`recv_filter_list`; old prefixes below protocol 29).

    Raises RemoteProtocolError (RERR_SYNTAX) for a malformed rule.
    """
    parsed: list[FilterRule] = []
    builder = RuleBuilder(parsed, old_prefixes=protocol < 29, delete_excluded=delete_excluded)
    for text in rules:
        builder.add_text(text)
    return parsed


def option_rules(
    filter_args: Sequence[tuple[str, str]], *, delete_excluded: bool = False
) -> list[FilterRule]:
    """Rules from the server's own argv (ServerOptions.filter_args), as parse_arguments.

    ``--exclude``/``--include`` take old-style prefixes; ``--filter`` the full syntax.
    """
    parsed: list[FilterRule] = []
    for kind, text in filter_args:
        raw = text.encode("utf-8", "surrogateescape")
        if kind in ("exclude-from", "include-from"):
            raise rule_error(f"--{kind} is not accepted by this server", raw)
        builder = RuleBuilder(
            parsed,
            template=RuleFlag.INCLUDE if kind == "include" else RuleFlag(0),
            old_prefixes=kind != "filter",
            delete_excluded=delete_excluded,
        )
        builder.add_text(raw)
    return parsed


def server_filter_rules(
    received: Iterable[bytes],
    protocol: int,
    *,
    am_sender: bool,
    cvs_exclude: bool = False,
    delete_excluded: bool = False,
    filter_args: Sequence[tuple[str, str]] = (),
) -> list[FilterRule]:
    """Return the server's whole rule list in rsync's order.

    That is its argv rules, the client's, then the CVS rules `recv_filter_list` adds for
    ``-C`` (":C" and "-C" as sender; ":C" also as a receiver below protocol 29, where
    the client did not send it).
    """
    rules = option_rules(filter_args, delete_excluded=delete_excluded)
    rules += parse_rules(received, protocol, delete_excluded=delete_excluded)
    if cvs_exclude:
        extra: list[bytes] = []
        if am_sender or protocol < 29:
            extra.append(b":C")
        if am_sender:
            extra.append(b"-C")
        for text in extra:
            RuleBuilder(rules, delete_excluded=delete_excluded).add_text(text)
    return rules
