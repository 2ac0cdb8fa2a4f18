"""Filter matching (`exclude.c:check_filter`, `rule_matches`, per-directory merge files).

Patterns follow `add_rule` and `rule_matches`: a trailing ``/`` matches directories only,
a leading ``/`` anchors at the transfer root, a pattern with a ``/`` inside matches the
tail of the path, one without matches the name, ``**`` crosses directories, and a
trailing ``/***`` also matches the directory itself (wildmatch.py).

Theory of operation. `parse_rules` (filter_syntax.py) turns the client's wire records
into `FilterRule` values (the top-level list). `FilterSet` answers the two questions the
roles ask, with rsync's first-match-wins `check_filter`: `excluded` (a sender: is this
name left out?) and `protected` (a receiver deleting: is this name kept?). Per-directory
merge rules
(``: .rsync-filter``, ``-F``, ``:C``) carry a rule list each; `enter_dir` reads the merge
file of every active dir-merge rule in that directory through a callback (sans-IO: the
caller supplies the bytes) and puts its rules in front of the inherited ones, and
`leave_dir` restores the parent's lists (`push_local_filters`, `pop_local_filters`).

Invariants: `_lists[rule]` is the effective list (local then inherited) of each active
dir-merge rule for the current directory; `_saved` holds one snapshot per entered
directory. Merge-file rules starting with ``/`` are anchored at their own directory.

Differences from rsync, by design: a ``. file`` (merge) rule from the wire and
``--exclude-from`` on a server would read server files and are refused; per-directory
merge files are looked for from the transfer root down, not in the root's parents; and
the side of a rule is honoured (`excluded` skips receiver-only rules, `protected`
sender-only ones), where rsync relies on the client never sending the other side's
rules -- identical for every list a real client sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .filter_syntax import (
    CVS_DEFAULT_IGNORES,
    FROM_CONTAINER,
    SIDES,
    FilterRule,
    RuleBuilder,
    RuleFlag,
    option_rules,
    parse_rules,
    read_filter_list,
    server_filter_rules,
)
from .wildmatch import has_wildcards, litmatch_array, wildmatch_array

__all__ = [
    "FilterRule",
    "FilterSet",
    "RuleFlag",
    "option_rules",
    "parse_rules",
    "read_filter_list",
    "rule_matches",
    "server_filter_rules",
]

def rule_matches(rule: FilterRule, name: bytes, is_dir: bool, abs_root: bytes = b"") -> bool:
    """`exclude.c:rule_matches` for a path relative to the transfer root."""
    flags = rule.flags
    positive = not flags & RuleFlag.NEGATE
    if not name or flags & RuleFlag.XATTR:
        return False
    pattern = rule.pattern
    slash_count = pattern.count(b"/")
    wild = has_wildcards(pattern)
    wild2 = wild and b"**" in pattern
    wild2_prefix = wild2 and pattern.startswith(b"**")
    wild3_suffix = wild2 and pattern.endswith(b"***")
    text = name
    joined = False  # rsync matches several strings joined: a prefix or a "/" was added
    if not slash_count and not wild2:
        text = name.rsplit(b"/", 1)[-1]
    elif flags & RuleFlag.ABS_PATH and abs_root:
        text, joined = abs_root.rstrip(b"/") + b"/" + name, True
    elif wild2_prefix:
        text, joined = b"/" + name, True
    if is_dir:
        if wild3_suffix:
            text, joined = text + b"/", True
    elif flags & RuleFlag.DIRECTORY:
        return not positive
    anchored = pattern.startswith(b"/")
    if anchored:
        pattern = pattern[1:]
    if not anchored and slash_count and not wild2:
        where = slash_count + 1  # match the last slash_count+1 path elements
    elif not anchored and wild2 and not wild2_prefix:
        where = -1  # try after every slash
    else:
        where = 0
    if wild:
        hit = wildmatch_array(pattern, text, where)
    elif joined:
        hit = litmatch_array(pattern, text, where)
    elif anchored:
        hit = text == pattern
    else:
        hit = text == pattern or text.endswith(b"/" + pattern)
    return hit if positive else not hit


MergeReader = Callable[[bytes], bytes | None]


class FilterSet:
    """A rule list with its per-directory merge state; see the module docstring."""

    def __init__(
        self,
        rules: Sequence[FilterRule],
        *,
        protocol: int = 32,
        delete_excluded: bool = False,
        abs_root: bytes = b"",
    ) -> None:
        """`abs_root` is what "/"-modifier (absolute) patterns see before the path."""
        self._rules = list(rules)
        self._delete_excluded = delete_excluded
        self._abs_root = abs_root
        # exclude.c:get_cvs_excludes: the defaults, word-split, perishable from 30 on
        self._cvs_rules: list[FilterRule] = []
        cvs_template = RuleFlag.NO_PREFIXES | RuleFlag.WORD_SPLIT
        if protocol >= 30:
            cvs_template |= RuleFlag.PERISHABLE
        RuleBuilder(self._cvs_rules, template=cvs_template).add_text(CVS_DEFAULT_IGNORES)
        self._merge_rules: list[FilterRule] = []
        self._lists: dict[FilterRule, list[FilterRule]] = {}
        self._saved: list[tuple[int, dict[FilterRule, list[FilterRule]]]] = []
        self._register(self._rules)

    def _register(self, rules: Iterable[FilterRule]) -> None:
        """Activate new dir-merge rules, skipping a file name already active (`add_rule`)."""
        for rule in rules:
            if not rule.flags & RuleFlag.PERDIR_MERGE:
                continue
            name = rule.pattern.rsplit(b"/", 1)[-1]
            if any(r.pattern.rsplit(b"/", 1)[-1] == name for r in self._merge_rules):
                continue
            self._merge_rules.append(rule)
            self._lists[rule] = []

    # --- queries -----------------------------------------------------------------------------
    def excluded(self, path: bytes, is_dir: bool) -> bool:
        """Whether the sender leaves `path` (relative to the transfer root) out."""
        return self._check(self._rules, path, is_dir, RuleFlag.SENDER_SIDE, False) < 0

    def protected(self, path: bytes, is_dir: bool, *, ignore_perishable: bool = False) -> bool:
        """Whether a deleting receiver must keep `path` (rsync: it is excluded there).

        `ignore_perishable` is set while emptying a directory that is itself being
        deleted (`delete.c:delete_item`): perishable rules then protect nothing.
        """
        side = RuleFlag.RECEIVER_SIDE
        return self._check(self._rules, path, is_dir, side, ignore_perishable) < 0

    def _check(
        self,
        rules: Sequence[FilterRule],
        path: bytes,
        is_dir: bool,
        side: RuleFlag,
        ignore_perishable: bool,
    ) -> int:
        """`check_filter`: 1 included, -1 excluded, 0 no rule matched."""
        for rule in rules:
            flags = rule.flags
            if ignore_perishable and flags & RuleFlag.PERISHABLE:
                continue
            if flags & RuleFlag.PERDIR_MERGE:
                local = self._lists.get(rule, [])
                result = self._check(local, path, is_dir, side, ignore_perishable)
            elif flags & RuleFlag.CVS_IGNORE:
                result = self._check(self._cvs_rules, path, is_dir, side, ignore_perishable)
            elif not rule.applies_to(side) or not rule_matches(rule, path, is_dir, self._abs_root):
                continue
            else:
                result = 1 if flags & RuleFlag.INCLUDE else -1
            if result:
                return result
        return 0

    # --- per-directory merge files -------------------------------------------------------------
    def enter_dir(self, dirpath: bytes, read_file: MergeReader) -> None:
        """Load the merge files of `dirpath` (relative to the root; b"." or b"" for it).

        `read_file(path)` returns a file's bytes, or None when it does not exist.
        """
        self._saved.append((len(self._merge_rules), dict(self._lists)))
        directory = b"" if dirpath in (b"", b".") else dirpath.strip(b"/")
        index = 0
        while index < len(self._merge_rules):  # files may activate more merge rules
            rule = self._merge_rules[index]
            index += 1
            inherited = [] if rule.flags & RuleFlag.NO_INHERIT else self._lists[rule]
            name = rule.pattern.rsplit(b"/", 1)[-1]
            content = read_file(directory + b"/" + name if directory else name)
            local: list[FilterRule] = []
            builder = RuleBuilder(
                local,
                template=_merge_template(rule),
                delete_excluded=self._delete_excluded,
                anchor_dir=directory,
            )
            if content:
                for line in _merge_lines(content, bool(rule.flags & RuleFlag.WORD_SPLIT)):
                    builder.add_text(line)
                self._register(local)
            self._lists[rule] = local if builder.cleared else local + inherited

    def leave_dir(self, dirpath: bytes) -> None:
        """Restore the lists in force before the matching `enter_dir`."""
        del dirpath  # directories are left in reverse order of entry
        count, lists = self._saved.pop()
        del self._merge_rules[count:]
        self._lists = lists


def _merge_template(rule: FilterRule) -> RuleFlag:
    """The flags a dir-merge rule lends the rules of its files."""
    keep = (
        FROM_CONTAINER
        | SIDES
        | RuleFlag.NO_PREFIXES
        | RuleFlag.WORD_SPLIT
        | RuleFlag.CVS_IGNORE
    )
    return rule.flags & keep


def _merge_lines(content: bytes, word_split: bool) -> list[bytes]:
    """`parse_filter_file`: lines (CR, LF or CRLF) or words; skip blanks and comments."""
    if word_split:
        return content.split()
    lines = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return [line for line in lines if line and not line.startswith((b"#", b";"))]
