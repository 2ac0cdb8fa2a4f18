"""--fuzzy's name scoring (util1.c fuzzy_distance, find_filename_suffix) against rsync.

The expected scores are what rsync 3.2.7 printed (--debug=fuzzy2, "fuzzy distance for
NAME = UNITS.FRACTION") choosing a basis for a new ``report-v2.txt`` among these names,
in its directory order; the lowest score so far is the pruning limit for the next.
"""

from __future__ import annotations

import random

import pytest

from rsyncd_py.roles.fuzzy import (
    MAX_DISTANCE,
    distances,
    filename_suffix,
    fuzzy_distance,
    name_distance,
)

RSYNC_SCORES = [  # (name, units, fraction) in rsync's order
    (b".hidden", 53, 4145),
    (b"archive.tar.gz", 43, 1556),
    (b"caf\xe9.txt", 9, 253),
    (b"log.2024.01", 51, 2855),
    (b"notes.md", 40, 1798),
    (b"rapport.txt", 5, 321),
    (b"report-v1.txt", 1, 1),
    (b"report.txt", 65535, 1),  # pruned: 3 bytes longer than the best so far allows
    (b"report.txt.bak", 7, 235),
    (b"x.~1~", 65535, 1),
]


@pytest.mark.parametrize("vectorised", [False, True])
def test_scores_match_rsync(vectorised: bool) -> None:
    base = b"report-v2.txt"
    suffix = filename_suffix(base)
    raw = distances([name for name, _, _ in RSYNC_SCORES], base).tolist()
    lowest = MAX_DISTANCE
    for (name, units, fraction), known in zip(RSYNC_SCORES, raw, strict=True):
        dist = name_distance(name, base, suffix, lowest, known=known if vectorised else None)
        assert (dist >> 16, dist & 0xFFFF) == (units, fraction), name
        lowest = min(lowest, dist)


def test_vectorised_distances_equal_the_recurrence() -> None:
    rng = random.Random(3)
    alphabet = b"ab.~129xyz-" + bytes([0xE9, 0xFF])
    for _ in range(200):
        base = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        names = [
            bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
            for _ in range(rng.randint(1, 20))
        ]
        want = [fuzzy_distance(name, base, 0xFFFFFFFF) for name in names]
        assert distances(names, base).tolist() == want, (names, base)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        (b"foo.txt", b".txt"),
        (b"foo.txt.bak", b".txt"),  # .bak, .old, .orig are skipped
        (b"foo.c.orig", b".c"),
        (b"foo.tar.gz", b".gz"),
        (b".bashrc", b""),  # leading dots are no suffix
        (b"foo.c~", b".c"),
        (b"x.~1~", b""),  # a backup number
        (b"log.txt.1", b".txt"),  # an all-digit suffix counts only without another
        (b"a.1", b".1"),
        (b"foo.bak~", b".bak"),  # rsync compares to the end of the name, "~" included
        (b"noext", b""),
    ],
)
def test_filename_suffix(name: bytes, suffix: bytes) -> None:
    assert filename_suffix(name) == suffix


def test_distance_weighs_how_far_apart_the_bytes_are() -> None:
    assert fuzzy_distance(b"a1", b"a2", MAX_DISTANCE) == (1 << 16) + 1
    assert fuzzy_distance(b"a1", b"a9", MAX_DISTANCE) == (1 << 16) + 8
    assert fuzzy_distance(b"", b"ab", MAX_DISTANCE) == 2 * (1 << 16) + ord("a") + ord("b")
    assert fuzzy_distance(b"a", b"abcd", 2 << 16) == 0xFFFF0001  # past the limit by length
