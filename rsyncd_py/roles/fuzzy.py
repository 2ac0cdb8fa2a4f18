"""--fuzzy (-y, -yy): a delta basis for a new file from a similar one (generator.c find_fuzzy).

Theory of operation. When the generator meets a regular file that the destination
lacks and no basis directory supplied, it looks for a file to diff against in the
file's directory -- and with -yy also in that directory under each --compare-dest,
--copy-dest or --link-dest directory (rsync's fuzzy_basis = basis dirs + 1). Only
regular, non-empty files count. The first one (in directory order, then name order)
of the same size and modification second wins; failing that, the one whose name is
nearest by util1.c fuzzy_distance, with ten times the distance between the two names'
suffixes added, at most 25 edits away, the last of equals winning.

State: the listings of one directory. They are made when the first new file of that
directory needs them (rsync's need_fuzzy_dirlist) and dropped when the generator moves
to another directory. A file of the destination directory the generator asks the
sender for after the listing was made is no candidate from then on, since the
receiver is about to replace it (rsync marks it FLAG_FILE_SENT).

The distance is rsync's Levenshtein variant: each edit costs a unit (1 << 16) plus
the byte values involved, so near misses rank by how far apart the changed bytes are.
`distances` computes it for all candidates at once with numpy; the choice then walks
them in order as rsync does, pruning by the length difference against the best so far.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import FNAMECMP_FUZZY
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.roles.alt_dest import basis_path
from rsyncd_py.roles.transfer import Transfer

UNIT: Final = 1 << 16
_TOO_FAR: Final = 0xFFFF * UNIT + 1  # fuzzy_distance's "over the limit" value
MAX_DISTANCE: Final = 25 << 16  # find_fuzzy ignores anything further away
_VECTOR_MIN: Final = 64  # candidates from which `distances` beats one at a time (measured)


@dataclass(frozen=True, slots=True)
class FuzzyBasis:
    """The file chosen: its basis type (FNAMECMP_FUZZY + directory), path and Stat."""

    basis_type: int
    name: bytes  # its base name: the xname of the item record
    path: bytes
    st: Stat


class FuzzyFinder:
    """find_fuzzy over the listings of the generator's current directory."""

    def __init__(self, t: Transfer) -> None:
        self.t = t
        self.dirs = t.opts.fuzzy_basis  # 1, or 1 + the basis dirs with -yy
        self._dir: bytes | None = None  # the destination directory listed
        self._lists: list[list[tuple[bytes, Stat]]] | None = None
        self._sent: set[bytes] = set()

    async def find(self, entry: FileEntry, path: bytes) -> FuzzyBasis | None:
        """Rsync generator.c find_fuzzy for the new file `entry` at `path`.

        Names compare by the sender's base name (a single file may land under another).
        """
        parent = path.rpartition(b"/")[0]
        base = entry.name.rpartition(b"/")[2]
        lists = await self._listings(parent)
        candidates = [
            (index, name, st)
            for index, listing in enumerate(lists)
            for name, st in listing
            if st.is_file() and st.size and not (index == 0 and name in self._sent)
        ]
        for index, name, st in candidates:
            if st.size == entry.size and self.t.same_time(
                st.mtime_ns // 1_000_000_000, 0, entry.mtime, 0
            ):
                return self._basis(parent, index, name, st)
        suffix = filename_suffix(base)
        # a name longer or shorter by more than MAX_DISTANCE units could never be chosen
        near = [c for c in candidates if abs(len(c[1]) - len(base)) * UNIT <= MAX_DISTANCE]
        raw: list[int | None] = [None] * len(near)
        if len(near) >= _VECTOR_MIN:
            raw = distances([name for _, name, _ in near], base).tolist()
        lowest, best = MAX_DISTANCE, None
        for (index, name, st), known in zip(near, raw, strict=True):
            dist = name_distance(name, base, suffix, lowest, known=known)
            if dist <= lowest:
                lowest, best = dist, (index, name, st)
        return None if best is None else self._basis(parent, *best)

    def file_sent(self, entry: FileEntry, path: bytes) -> None:
        """The generator asks for `entry` (at `path`): no basis for later files there."""
        if self._lists is not None and path.rpartition(b"/")[0] == self._dir:
            self._sent.add(entry.name.rpartition(b"/")[2])

    async def _listings(self, parent: bytes) -> list[list[tuple[bytes, Stat]]]:
        if self._lists is not None and parent == self._dir:
            return self._lists
        self._dir, self._sent = parent, set()
        lists: list[list[tuple[bytes, Stat]]] = []
        for index in range(self.dirs):
            where = parent if index == 0 else basis_path(self.t, index - 1, parent)
            try:
                lists.append(list(await self.t.fs.listdir(where)))
            except FsError:
                lists.append([])  # get_dirlist of a missing directory: nothing there
        self._lists = lists
        return lists

    def _basis(self, parent: bytes, index: int, name: bytes, st: Stat) -> FuzzyBasis:
        here = parent + b"/" + name if parent else name
        path = here if index == 0 else basis_path(self.t, index - 1, here)
        return FuzzyBasis(FNAMECMP_FUZZY + index, name, path, st)


def is_fuzzy_basis(t: Transfer, basis_type: int, xname: bytes | None) -> bool:
    """Whether an item record's fuzzy basis is one our generator could have chosen.

    The client echoes the record back; a name with a slash or a dot-dot could reach
    beyond the file's directory, which rsync's receiver would not notice.
    """
    return (
        FNAMECMP_FUZZY <= basis_type <= FNAMECMP_FUZZY + len(t.basis_dirs)
        and xname is not None
        and xname not in (b"", b".", b"..")
        and b"/" not in xname
    )


def fuzzy_basis_path(t: Transfer, path: bytes, basis_type: int, xname: bytes) -> bytes:
    """receiver.c: where the fuzzy basis `xname` of the file at `path` is."""
    parent = path.rpartition(b"/")[0]
    here = parent + b"/" + xname if parent else xname
    index = basis_type - FNAMECMP_FUZZY
    return here if index == 0 else basis_path(t, index - 1, here)


def name_distance(
    name: bytes, base: bytes, base_suffix: bytes, limit: int, *, known: int | None = None
) -> int:
    """Return find_fuzzy's score of candidate `name` for the new file `base`.

    The names' distance (`known`, if `distances` computed it), plus ten times their
    suffixes' unless the first is already past `limit` (the lowest score so far).
    """
    if known is None or abs(len(name) - len(base)) * UNIT > limit:
        dist = fuzzy_distance(name, base, limit)
    else:
        dist = known
    if dist < 0xFFFF0000:
        dist += _suffix_distance(filename_suffix(name), base_suffix) * 10
    return dist & 0xFFFFFFFF


@functools.lru_cache(maxsize=1024)
def _suffix_distance(suffix: bytes, base_suffix: bytes) -> int:
    return fuzzy_distance(suffix, base_suffix, 0xFFFF0000)


def distances(names: Sequence[bytes], base: bytes) -> np.ndarray:
    """fuzzy_distance(name, base) without a limit for every name at once.

    The same recurrence as `fuzzy_distance`, one numpy step per pair of positions for
    all names together (names shorter than the longest stop contributing at their
    length), so a directory of thousands of candidates costs what a few do.
    """
    out = np.zeros(len(names), dtype=np.int64)
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    if not names or not base or not lengths.all():
        out[:] = [fuzzy_distance(name, base, 0xFFFFFFFF) for name in names]
        return out
    padded = np.zeros((len(names), int(lengths.max())), dtype=np.int64)
    for k, name in enumerate(names):
        padded[k, : len(name)] = np.frombuffer(name, dtype=np.uint8)
    s2 = np.frombuffer(base, dtype=np.uint8).astype(np.int64)
    row = [np.full(len(names), (i2 + 1) * UNIT, dtype=np.int64) for i2 in range(len(s2))]
    for i1 in range(padded.shape[1]):
        c1 = padded[:, i1]
        delta = np.abs(c1[None, :] - s2[:, None])
        costs = np.where(delta != 0, UNIT + delta, 0)  # (len(base), names)
        left_step = c1 + UNIT
        diag = np.full(len(names), i1 * UNIT, dtype=np.int64)
        above = diag + UNIT
        for i2 in range(len(s2)):
            left = row[i2]
            diag_inc = diag + costs[i2]
            above = np.where(
                left < above,
                np.minimum(left + left_step, diag_inc),
                np.minimum(above + (UNIT + int(s2[i2])), diag_inc),
            )
            row[i2] = above
            diag = left
        done = lengths == i1 + 1
        out[done] = row[-1][done]
    return out


def filename_suffix(name: bytes) -> bytes:
    """Rsync util1.c find_filename_suffix: the name's most significant suffix.

    Leading dots are no suffix; "~", ".bak", ".old", ".orig" and ".~N~" are skipped;
    an all-digit suffix counts only if no earlier one does.
    """
    fn = name.lstrip(b".")
    n = len(fn)
    had_tilde = n > 1 and fn[n - 1] == 0x7E
    if had_tilde:
        n -= 1
    suffix = b""
    s = n
    while n > 1:
        s -= 1
        while s and fn[s] != 0x2E:
            s -= 1
        if s == 0:
            break
        length, n = n - s, s
        rest = fn[s + 1 :]  # rsync's strcmp runs to the end of the whole name
        if length == 4:
            if rest in (b"bak", b"old"):
                continue
        elif length == 5:
            if rest == b"orig":
                continue
        elif length > 2 and had_tilde and fn[s + 1] == 0x7E and fn[s + 2 : s + 3].isdigit():
            continue
        suffix = fn[s : s + length]
        if length == 1 or not suffix[1:].isdigit():
            break
    return suffix


def fuzzy_distance(s1: bytes, s2: bytes, upper_limit: int) -> int:
    """Rsync util1.c fuzzy_distance: the weighted Levenshtein distance of two names.

    Past `upper_limit` by the length difference alone it is _TOO_FAR without computing.
    """
    len1, len2 = len(s1), len(s2)
    if abs(len1 - len2) * UNIT > upper_limit:
        return _TOO_FAR
    if not len1 or not len2:
        rest = s1 or s2  # rsync sums them as (signed) chars
        return (len(rest) * UNIT + sum(b - 256 if b >= 128 else b for b in rest)) & 0xFFFFFFFF
    row = [(i2 + 1) * UNIT for i2 in range(len2)]
    for i1, c1 in enumerate(s1):
        diag, above = i1 * UNIT, (i1 + 1) * UNIT
        for i2, c2 in enumerate(s2):
            left = row[i2]
            diag_inc = diag + (UNIT + abs(c1 - c2) if c1 != c2 else 0)
            if left < above:
                above = min(left + UNIT + c1, diag_inc)
            else:
                above = min(above + UNIT + c2, diag_inc)
            row[i2] = above
            diag = left
    return row[-1]
