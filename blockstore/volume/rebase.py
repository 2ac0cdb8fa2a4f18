"""Rebase: replay what one transaction changed onto a newer snapshot's namespace.

Two sessions of one server may start from the same snapshot; the first to commit wins
the race, and the second must not drop the first one's work. Instead of logging every
operation, the second transaction's changes are recovered from its own namespace: a
dirty directory is compared with what the *base* snapshot had at the same path, and
each difference is applied to the newest snapshot's namespace (a three-way merge, the
way git merges trees):

| ours vs base              | applied to the target                                   |
|---------------------------|---------------------------------------------------------|
| equal                     | nothing (the target keeps whatever others did)          |
| added or changed          | put ours (a directory whose contents we did not touch   |
|                           | keeps the target's contents, only its metadata changes) |
| removed                   | remove; a directory others changed since loses only     |
|                           | what it had in the base (their additions stay)          |
| directory, changed inside | make sure the target has a directory there, recurse     |

Conflicting writes to one path resolve to the later commit (ours). A directory that
was moved keeps all its contents: at its new path the base had nothing, so every entry
inside counts as added.
"""

from __future__ import annotations

from dataclasses import replace

from blockstore.volume.objects import TreeEntry
from blockstore.volume.tree import DirNode, Namespace


def rebase(ours: Namespace, base_root: TreeEntry, target: Namespace) -> None:
    """Apply the changes `ours` made relative to `base_root` onto `target`."""
    with ours.lock:
        if _metadata(ours.root_entry) != _metadata(base_root):
            target.update_root(ours.root_entry)
        if ours.root.dirty:
            _merge_dir(ours, ours.root, b"", base_root.subtree, target)


def _merge_dir(
    ours: Namespace, node: DirNode, path: bytes, base_tree: bytes | None, target: Namespace
) -> None:
    assert node.entries is not None  # a dirty node is always loaded
    base = {e.name: e for e in ours.cache.get(ours.objects, base_tree)} if base_tree else {}
    for name in sorted(base.keys() | node.entries.keys()):
        b, o = base.get(name), node.entries.get(name)
        child_path = path + b"/" + name if path else name
        child = node.children.get(name)
        if o is not None and o.is_dir() and child is not None and child.dirty:
            current = target.lookup(child_path)
            if current is None or not current.is_dir():
                target.put(child_path, replace(o, subtree=None))
            elif b is None or _metadata(o) != _metadata(b):
                target.put(child_path, replace(o, subtree=current.subtree))
            base_child = b.subtree if b is not None and b.is_dir() else None
            _merge_dir(ours, child, child_path, base_child, target)
        elif o == b:
            continue
        elif o is None:
            _remove(ours, target, child_path, b)
        else:
            _put(target, child_path, o, b)


def _remove(ours: Namespace, target: Namespace, path: bytes, base: TreeEntry | None) -> None:
    current = target.lookup(path)
    if current is None:
        return
    changed_by_others = (
        current.is_dir()
        and current.subtree is not None
        and (base is None or not base.is_dir() or current.subtree != base.subtree)
    )
    if not changed_by_others:
        target.remove(path)
        return
    if base is not None and base.is_dir() and base.subtree is not None:
        _prune(ours, target, path, base.subtree)
    if not target.listdir(path):
        target.remove(path)


def _prune(ours: Namespace, target: Namespace, path: bytes, base_tree: bytes) -> None:
    """Remove from the target directory what it still has unchanged from the base."""
    base = {e.name: e for e in ours.cache.get(ours.objects, base_tree)}
    for current in target.listdir(path):
        child_path = path + b"/" + current.name
        before = base.get(current.name)
        if before is None:
            continue  # added by others: keep
        if current == before:
            target.remove(child_path)
        elif current.is_dir() and before.is_dir() and before.subtree is not None:
            _prune(ours, target, child_path, before.subtree)
            if not target.listdir(child_path):
                target.remove(child_path)


def _put(target: Namespace, path: bytes, ours: TreeEntry, base: TreeEntry | None) -> None:
    if ours.is_dir() and base is not None and base.is_dir() and ours.subtree == base.subtree:
        current = target.lookup(path)
        if current is not None and current.is_dir():
            target.put(path, replace(ours, subtree=current.subtree))
            return
    target.put(path, ours)


def _metadata(entry: TreeEntry) -> TreeEntry:
    """The entry without its contents (what `set_stat` can change on a directory)."""
    return replace(entry, subtree=None)
