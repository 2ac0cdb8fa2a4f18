"""What a pull's source argument names: rsync's flist.c send_file_list, first half.

Each argument (after the server expanded its wildcards) is split into the directory
the sender changes to and the name that goes into the file list, with the argument's
"name type" deciding whether a directory's contents are sent (a trailing slash or
"." -- a dot-dir) or the directory itself. With -R the whole argument is the name,
cut at an optional "/./" marker; a leading "./" makes the receiver's "." travel as an
implied directory. Pure functions over bytes; `flist_build.py` does the walking.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rsyncd_py.protocol.errors import ExitCode, SessionError


class NameType(enum.Enum):
    """How a source argument names its target (flist.c name_type)."""

    NORMAL = 0
    DOTDIR = 1  # "dir/", "dir/.", "." : the directory's contents, with a top "."
    SLASH_ENDING = 2  # -R "dir/"


@dataclass(frozen=True, slots=True)
class SourceArg:
    """One argument as send_file_list reads it."""

    directory: bytes | None  # where to change to first (None: stay), '/' = the root
    name: bytes  # the file-list name of the argument's target
    name_type: NameType
    wants_dot_dir: bool  # -R with a leading "./": send an implied "."


def clean_fname(name: bytes, *, keep_trailing_slash: bool, drop_trailing_dot: bool) -> bytes:
    """util1.c clean_fname: collapse '//' and interior './', optionally keep a final '/'."""
    anchored = name.startswith(b"/")
    parts = name.split(b"/")
    kept: list[bytes] = []
    trailing = False
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if not part:
            trailing = last and i > 0
            continue
        if part == b"." and (not last or drop_trailing_dot):
            trailing = last
            continue
        kept.append(part)
        trailing = False
    out = (b"/" if anchored else b"") + b"/".join(kept)
    if trailing and keep_trailing_slash and kept:
        out += b"/"
    return out or b"."


def has_dot_dot(name: bytes) -> bool:
    return b".." in name.split(b"/")


def split_arg(arg: bytes, *, relative: bool, first_dot: bool) -> SourceArg:
    """flist.c send_file_list's reading of one source argument (after globbing).

    `first_dot` is whether no earlier argument has claimed -R's implied "." yet.
    """
    wants_dot_dir = False
    if not relative:
        fbuf = arg
        if not fbuf or fbuf.endswith(b"/"):
            fbuf = b"." if fbuf == b"./" else fbuf + b"."
            name_type = NameType.DOTDIR
        elif fbuf.endswith(b"..") and (len(fbuf) == 2 or fbuf[-3:-2] == b"/"):
            fbuf += b"/."
            name_type = NameType.DOTDIR
        elif fbuf.endswith(b".") and (len(fbuf) == 1 or fbuf[-2:-1] == b"/"):
            name_type = NameType.DOTDIR
        else:
            name_type = NameType.NORMAL
        dir_part, slash, name = fbuf.rpartition(b"/")
        directory: bytes | None = (dir_part or b"/") if slash else None
        return SourceArg(directory, name or b".", name_type, wants_dot_dir)
    name_type = NameType.NORMAL
    marker = arg.find(b"/./")
    if marker >= 0:
        directory = arg[:marker] or b"/"
        name = arg[marker + 3 :].lstrip(b"/")
    else:
        directory, name = None, arg
    if first_dot and name.startswith(b"./") and len(name) > 2:
        wants_dot_dir = True
    name = clean_fname(name, keep_trailing_slash=True, drop_trailing_dot=True) if name else b""
    if name == b"/":
        name, name_type = b"/.", NameType.DOTDIR
    elif name == b".":
        name_type = NameType.DOTDIR
    elif name.endswith(b"/"):
        name = name[:-1]
        name_type = NameType.DOTDIR if name == b"." else NameType.SLASH_ENDING
    if has_dot_dot(name):
        raise SessionError(f'found ".." dir in relative path: {_text(name)}', ExitCode.RERR_SYNTAX)
    if not name:
        name, name_type = b".", NameType.DOTDIR
    return SourceArg(directory, name, name_type, wants_dot_dir)


def resolve_root_relative(base: bytes, rel: bytes) -> bytes | None:
    """Root-relative path of `rel` under `base` ('/...' from the root); None above it."""
    parts = [] if rel.startswith(b"/") else [p for p in base.split(b"/") if p]
    for part in rel.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return b"/".join(parts)


def _text(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
