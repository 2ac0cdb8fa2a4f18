"""Wildcards in a pull's source arguments, expanded against the served file system.

A 3.2.4+ client escapes shell specials in remote file names but not ``* ? [ ]``: it
expects the remote shell to glob `host:dir/*.log` as sh would (rsync-protocol.md A.1).
No shell ever sees our command line, so the sender expands the arguments itself before
building the file list. With ``-s`` the arguments arrive in-band and rsync's own
`util1.c:glob_expand` does the expanding; it differs from sh only in letting ``*`` match
names that start with a dot.

Rules (sh's, over `FileSystem.listdir`): an argument is split into '/'-separated
components; a component with a wildcard is matched against the names of the directory
built so far (rsync's wildmatch, which within one component is sh's pattern language);
a component followed by more components must be a directory; the matches are sorted.
An argument that matches nothing is kept literally, as sh does, so the file-list
builder reports the missing name the way rsync would.
"""

from __future__ import annotations

from rsyncd_py.fs.base import FileSystem, FsError
from rsyncd_py.protocol.wildmatch import has_wildcards, wildmatch


async def expand_args(
    fs: FileSystem, base: bytes, args: list[bytes], *, shell: bool
) -> list[bytes]:
    """Expand each of `args` (relative to the root-relative directory `base`).

    `shell` selects sh's rule that a wildcard never matches a leading dot; without it
    the rule of rsync's own glob_expand (``-s``) applies.
    """
    expanded: list[bytes] = []
    for arg in args:
        if not has_wildcards(arg):
            expanded.append(arg)
            continue
        matches = await _expand_one(fs, base, arg, shell=shell)
        expanded.extend(matches or [arg])
    return expanded


async def _expand_one(fs: FileSystem, base: bytes, arg: bytes, *, shell: bool) -> list[bytes]:
    """The matches of one argument (sh's glob), in sorted order; [] when nothing matches."""
    absolute = arg.startswith(b"/")
    parts = arg.split(b"/")
    trailing_slash = len(parts) > 1 and parts[-1] == b""
    components = [part for part in parts if part]
    # (text built so far, root-relative path of it)
    found: list[tuple[bytes, bytes]] = [(b"/" if absolute else b"", b"" if absolute else base)]
    for index, component in enumerate(components):
        last = index == len(components) - 1
        must_be_dir = not last or trailing_slash
        following: list[tuple[bytes, bytes]] = []
        for text, path in found:
            sep = b"" if not text or text.endswith(b"/") else b"/"
            for name in await _matching_names(fs, path, component, shell=shell):
                child = _join(path, name)
                if must_be_dir and not await _is_dir(fs, child):
                    continue
                following.append((text + sep + name, child))
        found = following
        if not found:
            return []
    suffix = b"/" if trailing_slash else b""
    return sorted(text + suffix for text, _ in found)


async def _matching_names(
    fs: FileSystem, path: bytes, component: bytes, *, shell: bool
) -> list[bytes]:
    """The names in directory `path` that `component` stands for."""
    if component in (b".", b".."):
        return [component]
    if not has_wildcards(component):
        return [component]
    try:
        listing = await fs.listdir(path)
    except FsError:
        return []  # sh: an unreadable or missing directory matches nothing
    hidden_ok = not shell or component.startswith(b".")
    return [
        name
        for name, _ in listing
        if (hidden_ok or not name.startswith(b".")) and wildmatch(component, name)
    ]


async def _is_dir(fs: FileSystem, path: bytes) -> bool:
    try:
        st = await fs.lstat(path)
    except FsError:
        return False
    return st is not None and st.is_dir()


def _join(path: bytes, name: bytes) -> bytes:
    """Root-relative path of `name` inside `path` ('.' and '..' handled, never above root)."""
    if name == b".":
        return path
    if name == b"..":
        return path.rpartition(b"/")[0]
    return path + b"/" + name if path else name
