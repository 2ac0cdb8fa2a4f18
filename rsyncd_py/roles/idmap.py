"""--usermap, --groupmap and --chown on the receiving side (uidlist.c parse_name_map).

Mirrors uidlist.c parse_name_map, recv_add_id and match_uid / match_gid.

A client's ``--chown=U:G`` arrives as ``--usermap=*:U --groupmap=*:G``. A map is a
comma-separated list of ``FROM:TO`` rules, tried in order: FROM is a sender id, an id
range ``LOW-HIGH``, a name, or a wildcard pattern matched against the sender's name
("" when it sent none); TO is a local name or number. An id no rule matches keeps
what it had. The first sight of each sender id decides its mapping for the session
(rsync caches it the same way).

Entries get the local id and its local name (or no name): the destination file
system then sets that id, and a store records both, so the next push compares owners
the same way.

State: the parsed rules and the per-session cache of sender id -> (id, name).
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable
from dataclasses import dataclass

from rsyncd_py.protocol.errors import ExitCode, SessionError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.wildmatch import wildmatch
from rsyncd_py.wire import Log, Wire

Owner = tuple[int, bytes | None]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One FROM:TO of a map (uidlist.c struct idlist with its NFLAGS_*)."""

    to: int
    low: int = 0
    high: int = 0  # an id range when not 0
    name: bytes | None = None  # a name, or a pattern when `pattern`
    pattern: bool = False

    def matches(self, ident: int, name: bytes) -> bool:
        if self.pattern:
            return wildmatch(self.name or b"", name)
        if self.name is not None:
            return self.name == name
        if self.high:
            return self.low <= ident <= self.high
        return ident == self.low


class IdMap:
    """One --usermap or --groupmap for a session (see the module docstring)."""

    def __init__(self, rules: list[_Rule], *, users: bool, id0_name: bytes | None) -> None:
        self.rules = rules
        self.users = users
        self._id0_name = id0_name  # the name id 0 has when the sender names no id 0
        self._seen: dict[int, Owner] = {}

    @classmethod
    def parse(
        cls, spec: str, *, users: bool, wire: Wire, id0_names: bool, numeric_ids: bool
    ) -> IdMap:
        """uidlist.c parse_name_map: the rules of `spec`, or rsync's error (exit 1).

        A TO name unknown here is reported and its rule dropped, as rsync does.
        """
        kind = "user" if users else "group"
        rules: list[_Rule] = []
        for item in spec.split(","):
            source, colon, target = item.partition(":")
            if not colon:
                raise SessionError(f"No colon found in --{kind}map: {item}", ExitCode.RERR_SYNTAX)
            if not target:
                raise SessionError(
                    f"No name found after colon --{kind}map: {item}", ExitCode.RERR_SYNTAX
                )
            to = _local_id(target, users=users)
            if to is None:
                wire.rprintf(Log.ERROR, f"Unknown --{kind}map name on receiver: {target}\n")
                continue
            rules.append(_parse_source(source, to, kind))
        id0_name = None if id0_names or numeric_ids else b"root"
        return cls(rules, users=users, id0_name=id0_name)

    def map(self, ident: int, name: bytes | None) -> Owner:
        """recv_add_id: the local (id, name) for the sender's `ident` named `name`."""
        found = self._seen.get(ident)
        if found is None:
            to = self.rule_for(ident, name)
            found = (ident, name) if to is None else (to, _local_name(to, users=self.users))
            self._seen[ident] = found
        return found

    def rule_for(self, ident: int, name: bytes | None) -> int | None:
        """The local id the first matching rule gives `ident`, or None (no rule matches)."""
        if name is None and ident == 0:
            name = self._id0_name
        for rule in self.rules:
            if rule.matches(ident, name or b""):
                return rule.to
        return None

    def apply(self, entries: Iterable[FileEntry]) -> None:
        """Give each entry its mapped owner (user map) or group (group map)."""
        for entry in entries:
            if self.users and entry.uid is not None:
                entry.uid, entry.user = self.map(entry.uid & 0xFFFFFFFF, entry.user)
            elif not self.users and entry.gid is not None:
                entry.gid, entry.group = self.map(entry.gid & 0xFFFFFFFF, entry.group)


def _parse_source(source: str, to: int, kind: str) -> _Rule:
    if source[:1].isdigit():
        low, dash, high = source.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            raise SessionError(f"Invalid number in --{kind}map: {source}", ExitCode.RERR_SYNTAX)
        return _Rule(to, low=int(low), high=int(high) if dash else 0)
    raw = source.encode("utf-8", "surrogateescape")
    return _Rule(to, name=raw, pattern=any(c in source for c in "*[?"))


def _local_id(text: str, *, users: bool) -> int | None:
    """uidlist.c user_to_uid / group_to_gid with num_ok: a number or a local name."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid if users else grp.getgrnam(text).gr_gid
    except KeyError:
        return None


def _local_name(ident: int, *, users: bool) -> bytes | None:
    try:
        name = pwd.getpwuid(ident).pw_name if users else grp.getgrgid(ident).gr_name
    except KeyError:
        return None
    return name.encode("utf-8", "surrogateescape")
